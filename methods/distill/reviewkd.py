"""ReviewKD: knowledge review through attention-based fusion (ABF) and the hierarchical context loss (HCL).

Paper: Chen et al., "Distilling Knowledge via Knowledge Review", CVPR 2021,
https://arxiv.org/abs/2104.09044. Code followed: mdistiller ``mdistiller/distillers/ReviewKD.py``.
The student's levels are visited from the deepest to the shallowest: each ABF maps its level to a
mid width M (conv1×1 + BN), fuses it with the (nearest-resized) output of the deeper ABF through two
sigmoid attention maps ``x·z0 + y·z1`` (z = sigmoid(conv1×1([x, y]))), resizes it to the teacher's
grid and maps it to the teacher's width (conv3×3 + BN). HCL compares each fused map with the teacher's
level: ``MSE + Σ_{l∈{4,2,1}, l<h} MSE(avgpool_l)·2^-k``, divided by the total weight; the levels'
losses are summed. M = min(max_mid_channels, C of the deepest student level), max 512 as mdistiller;
weight 1.0 (mdistiller REVIEWKD.LOSS_WEIGHT); a linear warm-up ``min(epoch / warmup_epochs, 1)``.

Adaptation to SAM: the levels are the encoder stages (``context.*_stages``) plus the image embedding
as the deepest level (mdistiller adds the pooled final feature the same way); student level i is
paired with the teacher level at the same relative depth (:func:`pair_by_depth`), so ViT-B students
and ViT-L teachers (4 + 1 levels each) pair one to one. Widths may differ at every level (the ABFs map
them). Deviation: ``warmup_epochs`` defaults to 0 (off): mdistiller warms up over 20 of 240 epochs,
longer than this suite's whole 10-epoch schedule; set it to reproduce the warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from bench.contracts.distill import DISTILLERS, DistillContext, Features

from ._common import FeatureDistiller, check_weight, pair_by_depth, stage_dims


def hcl_loss(s_feats: list[torch.Tensor], t_feats: list[torch.Tensor]) -> torch.Tensor:
    """Hierarchical context loss summed over level pairs of equal shape (B, C, h, w)."""
    total = s_feats[0].new_zeros(())
    for s, t in zip(s_feats, t_feats):
        h = s.shape[2]
        loss, weight, tot = F.mse_loss(s, t), 1.0, 1.0
        for level in (4, 2, 1):
            if level >= h:
                continue
            weight /= 2.0
            loss = loss + F.mse_loss(F.adaptive_avg_pool2d(s, level), F.adaptive_avg_pool2d(t, level)) * weight
            tot += weight
        total = total + loss / tot
    return total


class ABF(nn.Module):
    """Attention-based fusion of one level with the fused output of the deeper level."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, fuse: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(c_in, c_mid, 1, bias=False), nn.BatchNorm2d(c_mid))
        self.conv2 = nn.Sequential(nn.Conv2d(c_mid, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
        self.att = nn.Sequential(nn.Conv2d(2 * c_mid, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(
        self, x: torch.Tensor, residual: Optional[torch.Tensor], out_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (the level's output at the teacher's width and grid, the fused mid-width map)."""
        x = self.conv1(x)
        if self.att is not None:
            assert residual is not None
            y = F.interpolate(residual, size=x.shape[-2:], mode="nearest")
            z = self.att(torch.cat([x, y], dim=1))
            x = x * z[:, :1] + y * z[:, 1:]
        if tuple(x.shape[-2:]) != tuple(out_size):
            x = F.interpolate(x, size=out_size, mode="nearest")
        return self.conv2(x), x


@dataclass
class ReviewKDOptions:
    """Options of the ReviewKD distiller."""

    weight: float = field(default=1.0, metadata={"help": "HCL weight (mdistiller REVIEWKD.LOSS_WEIGHT 1.0)"})
    warmup_epochs: int = field(
        default=0, metadata={"help": "linear warm-up of the weight over this many epochs (mdistiller: 20); 0 = off"}
    )
    max_mid_channels: int = field(default=512, metadata={"help": "cap on the ABF mid width (mdistiller: 512)"})

    def __post_init__(self) -> None:
        check_weight("weight", self.weight)
        for name, low in (("warmup_epochs", 0), ("max_mid_channels", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


@DISTILLERS.register("reviewkd")
class ReviewKD(FeatureDistiller):
    """ABF + HCL over the encoder stages and the embedding; returns ``{"l_review": w · warm-up · HCL}``."""

    Options = ReviewKDOptions

    def __init__(self, options: ReviewKDOptions, context: DistillContext) -> None:
        super().__init__(options, context)
        s_dims, t_dims = stage_dims(context)
        s_dims, t_dims = s_dims + [context.student_embed_dim], t_dims + [context.teacher_embed_dim]
        self.student_blocks = tuple(context.student_stages)
        pairs = pair_by_depth(len(s_dims), len(t_dims))
        self.teacher_levels = pairs
        self.teacher_blocks = tuple(sorted({context.teacher_stages[j] for j in pairs if j < len(t_dims) - 1}))
        mid = min(options.max_mid_channels, s_dims[-1])
        n = len(s_dims)
        # abfs[i] serves student level i; the deepest (last) level has nothing deeper to fuse with
        self.abfs = nn.ModuleList(ABF(s_dims[i], mid, t_dims[pairs[i]], fuse=i < n - 1) for i in range(n))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))

    def _level(self, f: Features, stages: list[int], j: int) -> torch.Tensor:
        """Level j of a model: its stage j's block output, or the image embedding after the last stage."""
        return f.blocks[stages[j]] if j < len(stages) else f.embedding

    def terms(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        s_stages, t_stages = self.context.student_stages, self.context.teacher_stages
        s_levels = [self._level(student, s_stages, i) for i in range(len(self.abfs))]
        t_levels = [self._level(teacher, t_stages, j) for j in self.teacher_levels]
        outputs: list[torch.Tensor] = []
        residual = None
        for i in reversed(range(len(s_levels))):
            out, residual = self.abfs[i](s_levels[i], residual, tuple(t_levels[i].shape[-2:]))
            outputs.insert(0, out)
        scale = self.options.weight * self.warmup_factor()
        return {"l_review": scale * hcl_loss(outputs, t_levels)}

    def warmup_factor(self) -> float:
        """min(current epoch / warmup_epochs, 1), the current epoch being 1-based."""
        if self.options.warmup_epochs == 0:
            return 1.0
        return min((int(self.epochs_done) + 1) / self.options.warmup_epochs, 1.0)

    def on_epoch_end(self, epoch: int, probe: Callable[[], tuple[Features, Optional[Features]]], run_dir: Any) -> None:
        """Count finished epochs for the warm-up (a buffer, so a resumed run continues the ramp)."""
        self.epochs_done.fill_(epoch)
