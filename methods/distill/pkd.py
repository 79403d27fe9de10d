"""PKD: feature distillation through the Pearson correlation coefficient, on the image embedding.

Paper: Cao et al., "PKD: General Distillation Framework for Object Detectors via Pearson Correlation
Coefficient", NeurIPS 2022, https://arxiv.org/abs/2207.02039. Code followed: mmrazor
``mmrazor/models/losses/pkd_loss.py``: every channel is standardised over (N, H, W) with its unbiased
std + 1e-6, then ``loss_weight · MSE(norm_S, norm_T) / 2`` (= 1 − Pearson r per channel, up to the
unbiased-std factor); loss_weight 1.0.

Adaptation to SAM: the single layer distilled is the image embedding z_i (the paper distils FPN
levels of a detector; InfoSAM Table 2 lists PKD among the single-layer feature methods). When the
embedding widths differ, a learned 1×1 conv maps the student to the teacher's width. Deviation: on a
spatial mismatch mmrazor resizes the student to the teacher's size; here the teacher is resized to the
student's (the suite's convention; SAM students and teachers of one input size have equal grids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from bench.contracts.distill import DISTILLERS, DistillContext, Features

from ._common import FeatureDistiller, check_weight, conv_adapter, resize_map


def channel_standardize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B, C, h, w) standardised per channel over (B, h, w): (x − mean) / (unbiased std + eps)."""
    c = x.shape[1]
    flat = x.transpose(0, 1).reshape(c, -1)
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, keepdim=True)
    return ((flat - mean) / (std + eps)).reshape(c, x.shape[0], *x.shape[2:]).transpose(0, 1)


def pkd_loss(s_feat: torch.Tensor, t_feat: torch.Tensor) -> torch.Tensor:
    """MSE between the channel-standardised maps, halved (mmrazor ``PKDLoss`` with loss_weight 1)."""
    return F.mse_loss(channel_standardize(s_feat), channel_standardize(t_feat)) / 2


@dataclass
class PKDOptions:
    """Options of the PKD distiller."""

    weight: float = field(default=1.0, metadata={"help": "loss weight (mmrazor PKDLoss loss_weight 1.0)"})

    def __post_init__(self) -> None:
        check_weight("weight", self.weight)


@DISTILLERS.register("pkd", feature_matching=True)
class PKD(FeatureDistiller):
    """Pearson-correlation distillation of the image embedding; returns ``{"l_pkd": weight · loss}``."""

    Options = PKDOptions

    def __init__(self, options: PKDOptions, context: DistillContext) -> None:
        super().__init__(options, context)
        self.adapter = conv_adapter(context.student_embed_dim, context.teacher_embed_dim)

    def terms(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        s = self.adapter(student.embedding)
        t = resize_map(teacher.embedding, tuple(s.shape[-2:]))
        return {"l_pkd": self.options.weight * pkd_loss(s, t)}
