"""VID: variational information distillation on the encoder stages.

Paper: Ahn et al., "Variational Information Distillation for Knowledge Transfer", CVPR 2019,
https://arxiv.org/abs/1904.05835. Code followed: RepDistiller ``distiller_zoo/VID.py`` and
``train_student.py``: per layer, a regressor conv1×1(C_s→C_m)–ReLU–conv1×1(C_m→C_m)–ReLU–conv1×1
(C_m→C_t) with C_m = C_t, predicts the mean μ of a Gaussian over the teacher's feature t with a
learned per-channel variance σ² = softplus(log_scale) + eps (log_scale initialised so that σ² = 5);
the loss is ``mean(0.5·((μ − t)²/σ² + log σ²))``, summed over layers with weight β = 1. When the sizes
differ the larger map is average-pooled to the smaller one.

Adaptation to SAM: RepDistiller uses the intermediate CNN stages ``feat[1:-1]``; here the layers are
the student's encoder stages (``context.student_stages``: the blocks ending each stage), each paired
with the teacher's stage at the same relative depth (:func:`pair_by_depth`; one to one for ViT-B↔ViT-L
and equal backbones). Different widths (ViT-B 768 vs ViT-L 1024) are what the regressor already maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.contracts.distill import DISTILLERS, DistillContext, Features

from ._common import FeatureDistiller, check_positive, check_weight, pair_by_depth, stage_dims


def vid_nll(mean: torch.Tensor, target: torch.Tensor, log_scale: torch.Tensor, eps: float) -> torch.Tensor:
    """Gaussian negative log-likelihood (without the constant), averaged over every element.

    Args:
        mean: Predicted mean μ, (B, C, h, w).
        target: Teacher feature t, same shape.
        log_scale: (C,) pre-softplus variance parameters; σ² = softplus(log_scale) + eps.
    """
    var = (F.softplus(log_scale) + eps).view(1, -1, 1, 1)
    return (0.5 * ((mean - target) ** 2 / var + torch.log(var))).mean()


class VIDRegressor(nn.Module):
    """Mean regressor and per-channel variance of one layer pair (RepDistiller's ``VIDLoss``)."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, init_var: float, eps: float) -> None:
        super().__init__()
        self.regressor = nn.Sequential(
            nn.Conv2d(c_in, c_mid, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(c_mid, c_mid, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(c_mid, c_out, 1, bias=False),
        )
        self.eps = eps
        self.log_scale = nn.Parameter(torch.full((c_out,), math.log(math.expm1(init_var - eps))))

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        (hs, ws), (ht, wt) = s.shape[-2:], t.shape[-2:]
        if hs * ws > ht * wt:
            s = F.adaptive_avg_pool2d(s, (ht, wt))
        elif hs * ws < ht * wt:
            t = F.adaptive_avg_pool2d(t, (hs, ws))
        return vid_nll(self.regressor(s), t, self.log_scale, self.eps)


@dataclass
class VIDOptions:
    """Options of the VID distiller (defaults: RepDistiller)."""

    weight: float = field(default=1.0, metadata={"help": "weight β of the summed per-layer losses (RepDistiller -b 1)"})
    init_var: float = field(default=5.0, metadata={"help": "initial predicted variance σ² (init_pred_var)"})
    eps: float = field(default=1e-5, metadata={"help": "variance floor added after the softplus"})

    def __post_init__(self) -> None:
        check_weight("weight", self.weight)
        check_positive("eps", self.eps)
        if not isinstance(self.init_var, (int, float)) or not self.eps < self.init_var < float("inf"):
            raise ValueError(f"init_var must be a finite number > eps={self.eps}, got {self.init_var!r}")


@DISTILLERS.register("vid")
class VID(FeatureDistiller):
    """VID over the encoder stages; returns ``{"l_vid": weight · Σ_layers NLL}``."""

    Options = VIDOptions

    def __init__(self, options: VIDOptions, context: DistillContext) -> None:
        super().__init__(options, context)
        s_dims, t_dims = stage_dims(context)
        pairs = pair_by_depth(len(s_dims), len(t_dims))
        self.student_blocks = tuple(context.student_stages)
        self.teacher_blocks = tuple(sorted({context.teacher_stages[j] for j in pairs}))
        self.pairs = [(context.student_stages[i], context.teacher_stages[j]) for i, j in enumerate(pairs)]
        self.regressors = nn.ModuleList(
            VIDRegressor(s_dims[i], t_dims[j], t_dims[j], options.init_var, options.eps) for i, j in enumerate(pairs)
        )

    def terms(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        losses = [reg(student.blocks[s], teacher.blocks[t]) for reg, (s, t) in zip(self.regressors, self.pairs)]
        return {"l_vid": self.options.weight * torch.stack(losses).sum()}
