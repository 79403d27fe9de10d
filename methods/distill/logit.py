"""Logit distillation: soft mask-logit KD against the frozen teacher's prediction for the same prompt.

Paper row "Logit" of InfoSAM Table 2 (it cites Zhu et al., NeurIPS 2018); the loss is Hinton et
al.'s KD as in RepDistiller ``distiller_zoo/KD.py`` (``KL(softmax(t/T) ‖ softmax(s/T))·T²``, T = 4)
and mdistiller's KD weights (CE 0.1, KD 0.9).

Adaptation to SAM: the single-mask output has one logit per pixel, i.e. a two-class softmax over
(0, z); the KL is taken per pixel of the low-resolution logits (B, 1, h', w'), summed over its two
classes and averaged over pixels and the batch (RepDistiller sums over classes and averages over
samples). The teacher's logits are resized to the student's grid when they differ.

Deviation: the structure loss keeps weight 1 (the suite's protocol); mdistiller's CE weight 0.1 is
not applied, only the KD weight ``weight`` = 0.9.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from bench.contracts.distill import DISTILLERS, DistillContext, Features

from ._common import FeatureDistiller, bernoulli_kl, check_positive, check_weight, resize_map


def logit_kd_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · mean over pixels of the per-pixel binary KL(σ(t/T) ‖ σ(s/T)).

    Args:
        s_logits: Student mask logits (B, 1, h, w).
        t_logits: Teacher mask logits, same shape.
        temperature: T > 0.
    """
    return temperature**2 * bernoulli_kl(t_logits, s_logits, temperature).mean()


@dataclass
class LogitOptions:
    """Options of the logit distiller (defaults: RepDistiller / mdistiller KD)."""

    weight: float = field(default=0.9, metadata={"help": "KD weight (mdistiller KD_WEIGHT 0.9)"})
    temperature: float = field(default=4.0, metadata={"help": "softening temperature T (RepDistiller -T 4)"})

    def __post_init__(self) -> None:
        check_weight("weight", self.weight)
        check_positive("temperature", self.temperature)


@DISTILLERS.register("logit", feature_matching=True, owns_parameters=False)
class LogitKD(FeatureDistiller):
    """Soft mask-logit distillation; returns ``{"l_kd": weight · T² · KL}``. No trainable parts."""

    Options = LogitOptions

    def __init__(self, options: LogitOptions, context: DistillContext) -> None:
        super().__init__(options, context)

    def terms(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        t = resize_map(teacher.logits, tuple(student.logits.shape[-2:]))
        return {"l_kd": self.options.weight * logit_kd_loss(student.logits, t, self.options.temperature)}
