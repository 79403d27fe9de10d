"""SemCKD: cross-layer distillation with semantic calibration (attention allocation over stages).

Paper: Chen et al., "Cross-Layer Distillation with Semantic Calibration", AAAI 2021,
https://arxiv.org/abs/2012.03236. Code followed: github.com/DefangChen/SemCKD
(``distiller_zoo/SemCKD.py``, ``models/util.py``: ``SelfA``, ``MLPEmbed``, ``AAEmbed``; scripts:
``-b 400``). Every student layer i gets a query and every teacher layer j a key, both computed from
the layer's B×B sample-similarity matrix f fᵀ by an MLP (Linear(B→2k)–ReLU–Linear(2k→k), then L2
normalisation, k = B / factor; the code's factor is 4 at its batch of 64, k = 16);
α_b = softmax_j(q_bi · k_bj) allocates each student layer over the teacher layers, per sample.
A regressor per (i, j) pair, conv1×1(C_s→M)–BN–ReLU–conv3×3(M→M)–BN–ReLU–conv1×1(M→C_t),
maps the student layer to the teacher's width (the larger map
is average-pooled to the smaller one first), and the loss is
``β · Σ_b Σ_ij α_bij · mean((reg_ij(s_i) − t_j)²) / (B · n_s)``, β = 400.

Adaptation to SAM: the layers are the encoder stages (``context.*_stages``; the code uses the CNN
stages ``feat[1:-1]``). Deviations:

* ``max_mid_channels`` caps the regressor width M (the code uses M = 2·C_t: 1536 for ViT-B, i.e.
  16 regressors of ~21M parameters each); M = min(2·C_t, max_mid_channels), default 256.
* The query/key MLPs read rows of the B×B similarity matrix, so they are built for one batch size
  (``batch_size``, which must equal ``train.batch_size``). A smaller batch (samples with empty masks
  removed) is skipped with a zero term, as the code skips incomplete batches; a larger one raises.
  At B = 4 the code's factor 4 gives k = 1: each L2-normalised query/key is ±1, the attention is
  fixed by signs and its MLPs get no gradient (the method is inert). The default here is
  ``factor=1`` (k = B = 4-d queries/keys); factors giving k < 2 are rejected.
* The code adds logit KD (``-a 1``) to SemCKD; the ``semckd`` row here is the feature term alone
  (chain ``semckd+logit`` for both).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.contracts.distill import DISTILLERS, DistillContext, Features

from ._common import FeatureDistiller, check_weight, stage_dims

log = logging.getLogger(__name__)


def semckd_loss(
    att: torch.Tensor, s_values: list[list[torch.Tensor]], t_values: list[list[torch.Tensor]]
) -> torch.Tensor:
    """Σ_b Σ_ij att[b, i, j] · mean((s_values[i][j][b] − t_values[i][j][b])²) / (B · n_s).

    Args:
        att: (B, n_s, n_t) attention of each student layer over the teacher layers.
        s_values / t_values: [i][j] the regressed student map and the (pooled) teacher map, (B, C, h, w).
    """
    b, n_s, n_t = att.shape
    per_pair = torch.stack(
        [
            torch.stack([(s_values[i][j] - t_values[i][j]).pow(2).reshape(b, -1).mean(dim=1) for j in range(n_t)], 1)
            for i in range(n_s)
        ],
        dim=1,
    )  # (B, n_s, n_t)
    return (att * per_pair).sum() / (b * n_s)


class MLPEmbed(nn.Module):
    """Linear(d_in → 2k) – ReLU – Linear(2k → k) – L2 normalisation (SemCKD's query/key embedding)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, 2 * d_out), nn.ReLU(), nn.Linear(2 * d_out, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


def aa_embed(c_in: int, c_mid: int, c_out: int) -> nn.Module:
    """SemCKD's ``AAEmbed`` regressor with mid width ``c_mid``."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_mid, 1, bias=False),
        nn.BatchNorm2d(c_mid),
        nn.ReLU(),
        nn.Conv2d(c_mid, c_mid, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_mid),
        nn.ReLU(),
        nn.Conv2d(c_mid, c_out, 1, bias=False),
    )


@dataclass
class SemCKDOptions:
    """Options of the SemCKD distiller."""

    weight: float = field(default=400.0, metadata={"help": "weight β (SemCKD scripts: -b 400)"})
    batch_size: int = field(
        default=4, metadata={"help": "training batch size the query/key MLPs read (= train.batch_size)"}
    )
    factor: int = field(
        default=1, metadata={"help": "query/key width k = batch_size // factor, k >= 2 (code: 4 at B = 64)"}
    )
    max_mid_channels: int = field(
        default=256, metadata={"help": "cap on the regressor mid width (code: 2·C_t, uncapped)"}
    )

    def __post_init__(self) -> None:
        check_weight("weight", self.weight)
        for name in ("batch_size", "factor", "max_mid_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (B×B similarities), got {self.batch_size}")
        if self.batch_size // self.factor < 2:
            raise ValueError(
                f"batch_size // factor must be >= 2 (a 1-d L2-normalised query/key is ±1: the attention "
                f"gets no gradient), got {self.batch_size} // {self.factor}"
            )


@DISTILLERS.register("semckd")
class SemCKD(FeatureDistiller):
    """SemCKD over the encoder stages; returns ``{"l_semckd": β · loss}``."""

    Options = SemCKDOptions

    def __init__(self, options: SemCKDOptions, context: DistillContext) -> None:
        super().__init__(options, context)
        s_dims, t_dims = stage_dims(context)
        self.student_blocks = tuple(context.student_stages)
        self.teacher_blocks = tuple(context.teacher_stages)
        k = options.batch_size // options.factor
        self.query = nn.ModuleList(MLPEmbed(options.batch_size, k) for _ in s_dims)
        self.key = nn.ModuleList(MLPEmbed(options.batch_size, k) for _ in t_dims)
        self.regressors = nn.ModuleList(
            nn.ModuleList(aa_embed(cs, min(2 * ct, options.max_mid_channels), ct) for ct in t_dims) for cs in s_dims
        )
        self._warned = False

    def attention(self, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor]) -> torch.Tensor:
        """(B, n_s, n_t) softmax allocation of each student layer over the teacher layers."""

        def similarity(f: torch.Tensor) -> torch.Tensor:
            flat = f.reshape(f.shape[0], -1)
            return flat @ flat.t()

        q = torch.stack([m(similarity(f)) for m, f in zip(self.query, s_feats)], dim=1)  # (B, n_s, k)
        k = torch.stack([m(similarity(f)) for m, f in zip(self.key, t_feats)], dim=2)  # (B, k, n_t)
        return F.softmax(torch.bmm(q, k), dim=-1)

    def terms(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        b = student.embedding.shape[0]
        if b != self.options.batch_size:
            if b > self.options.batch_size:
                raise ValueError(
                    f"semckd was built for batches of {self.options.batch_size} (distill.batch_size) but got {b}: "
                    "set distill.batch_size to train.batch_size"
                )
            if not self._warned:
                log.warning("semckd: skipping batches smaller than %d (here %d)", self.options.batch_size, b)
                self._warned = True
            return {"l_semckd": student.embedding.new_zeros(())}
        s_feats = [student.blocks[i] for i in self.student_blocks]
        t_feats = [teacher.blocks[j] for j in self.teacher_blocks]
        att = self.attention(s_feats, t_feats)
        s_values: list[list[torch.Tensor]] = []
        t_values: list[list[torch.Tensor]] = []
        for i, s in enumerate(s_feats):
            s_values.append([])
            t_values.append([])
            for j, t in enumerate(t_feats):
                (hs, ws), (ht, wt) = s.shape[-2:], t.shape[-2:]
                if hs * ws > ht * wt:
                    s_in, t_out = F.adaptive_avg_pool2d(s, (ht, wt)), t
                else:
                    s_in, t_out = s, F.adaptive_avg_pool2d(t, (hs, ws))
                s_values[i].append(self.regressors[i][j](s_in))
                t_values[i].append(t_out)
        return {"l_semckd": self.options.weight * semckd_loss(att, s_values, t_values)}
