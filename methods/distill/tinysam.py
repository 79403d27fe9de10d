"""TinySAM's full-stage distillation: image embedding + decoder output token + mask logits, hard-mask weighted.

Paper: Shu et al., "TinySAM: Pushing the Envelope for Efficient Segment Anything Model", AAAI 2025,
https://arxiv.org/abs/2312.13789 (§3.1). The official repository (xinghaochen/TinySAM) has inference
code only (issue #14: no training code will be released), so every formula here is our reading of the
paper, not checked against code:

* ``l_embed`` = w_embed · MSE(z_i^S, z_i^T) (image-encoder stage);
* ``l_token`` = w_token · MSE(z_m^S, z_m^T) (decoder-transformer stage: the output token that
  produces the single mask, ``hs[:, 1]``; the IoU token is not exposed by the backbone interface);
* ``l_mask`` = w_mask · mean_b H_b · mean_pixels KL(σ(t) ‖ σ(s)) (mask-logit stage, the per-pixel
  binary KL of :func:`methods.distill._common.bernoulli_kl`, zero when the logits match);
* hard-mask weighting: H_b = sigmoid(IoU(M^T_b, GT_b) / (IoU(M^S_b, GT_b) + ε) − 1) (detached), which
  grows where the student's mask is worse than the teacher's; IoU of the logits thresholded at 0 and
  upsampled to the input grid, against the ground-truth mask in the same frame (an empty union has
  IoU 1). ``hard_mask_weighting=false`` sets H = 1.

Not implemented: TinySAM's hard prompt sampling (prompts follow this suite's training protocol).
Adaptation: TinySAM compresses SAM into a TinyViT student; here the student is the PEFT model and the
teacher the frozen pre-trained SAM (InfoSAM Table 2). Widths: a learned 1×1 conv (embedding) and a
linear map (token) send the student to the teacher's width when they differ; the teacher's embedding
and logits are resized to the student's grids when they differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from bench.contracts.distill import DISTILLERS, DistillContext, Features

from ._common import FeatureDistiller, bernoulli_kl, check_weight, conv_adapter, linear_adapter, resize_map

IOU_EPS = 1e-6


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU per sample of ``logits > 0`` (B, 1, h, w), upsampled to ``target``'s (B, S, S) grid; 1 when the
    union is empty."""
    up = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0
    gt = target > 0.5
    inter = (up & gt).flatten(1).sum(1).float()
    union = (up | gt).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def hardness(t_logits: torch.Tensor, s_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """H_b = sigmoid(IoU_T / (IoU_S + ε) − 1), (B,), without gradient."""
    with torch.no_grad():
        return torch.sigmoid(mask_iou(t_logits, target) / (mask_iou(s_logits, target) + IOU_EPS) - 1)


def weighted_mask_kl(s_logits: torch.Tensor, t_logits: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """mean_b weight_b · mean over pixels of KL(σ(t) ‖ σ(s)); logits (B, 1, h, w), weight (B,)."""
    per_mask = bernoulli_kl(t_logits, s_logits).flatten(1).mean(dim=1)
    return (weight * per_mask).mean()


@dataclass
class TinySAMOptions:
    """Options of the TinySAM distiller (weights: 1 each; the paper sums the three stage losses)."""

    w_embed: float = field(default=1.0, metadata={"help": "weight of the image-embedding MSE"})
    w_token: float = field(default=1.0, metadata={"help": "weight of the decoder output-token MSE"})
    w_mask: float = field(default=1.0, metadata={"help": "weight of the (hard-weighted) mask-logit KL"})
    hard_mask_weighting: bool = field(default=True, metadata={"help": "weight each mask by its hardness H"})

    def __post_init__(self) -> None:
        for name in ("w_embed", "w_token", "w_mask"):
            check_weight(name, getattr(self, name))
        if not isinstance(self.hard_mask_weighting, bool):
            raise ValueError(f"hard_mask_weighting must be true or false, got {self.hard_mask_weighting!r}")


@DISTILLERS.register("tinysam", feature_matching=True)
class TinySAMDistiller(FeatureDistiller):
    """Full-stage distillation; returns ``{"l_embed", "l_token", "l_mask"}`` (weighted)."""

    Options = TinySAMOptions

    def __init__(self, options: TinySAMOptions, context: DistillContext) -> None:
        super().__init__(options, context)
        self.embed_adapter = conv_adapter(context.student_embed_dim, context.teacher_embed_dim)
        self.token_adapter = linear_adapter(context.student_embed_dim, context.teacher_embed_dim)

    def terms(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        opts = self.options
        s_embed = self.embed_adapter(student.embedding)
        t_embed = resize_map(teacher.embedding, tuple(s_embed.shape[-2:]))
        t_logits = resize_map(teacher.logits, tuple(student.logits.shape[-2:]))
        if opts.hard_mask_weighting:
            target = batch["target"].to(student.logits.device)
            h = hardness(t_logits, student.logits, target)
        else:
            h = student.logits.new_ones(student.logits.shape[0])
        return {
            "l_embed": opts.w_embed * F.mse_loss(s_embed, t_embed),
            "l_token": opts.w_token * F.mse_loss(self.token_adapter(student.mask_token), teacher.mask_token),
            "l_mask": opts.w_mask * weighted_mask_kl(student.logits, t_logits, h),
        }
