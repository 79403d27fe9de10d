"""Pieces shared by the distillation baselines: float32 features, width adapters, resizing, stage pairing.

CNN-era distillers assume a ladder of CNN stages. Here a *stage* is the encoder block that ends it
(:meth:`bench.backbones.Backbone.stage_ends`: ViT-B blocks 2, 5, 8, 11 (global attention), ViT-L
5, 11, 17, 23, LiteMedSAM's TinyViT 1, 7, 9); the backbones already return block tokens as
(B, C_l, h_l, w_l) maps (:class:`bench.contracts.distill.Features`). Where the student's and the
teacher's widths differ, the distiller owns a learned 1×1 conv / linear adapter on the student side
(FitNets-style); where spatial sizes differ, the teacher map is resized to the student's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.contracts.distill import DistillContext, Distiller, Features


def check_weight(name: str, value: Any) -> None:
    """Raise ValueError unless ``value`` is a finite number >= 0 (loss weights, temperatures)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    """Raise ValueError unless ``value`` is a finite number > 0."""
    check_weight(name, value)
    if value == 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def float_features(f: Features, detach: bool = False) -> Features:
    """A float32 copy of every tensor in ``f`` (detached for the teacher)."""

    def cast(t: torch.Tensor) -> torch.Tensor:
        t = t.detach() if detach else t
        return t.float()

    return Features(
        embedding=cast(f.embedding),
        mask_token=cast(f.mask_token),
        logits=cast(f.logits),
        iou=cast(f.iou),
        blocks={k: cast(v) for k, v in f.blocks.items()},
    )


class FeatureDistiller(Distiller):
    """Base of the baselines: :meth:`forward` turns off autocast, casts both feature sets to float32
    (the teacher's detached) and calls :meth:`terms`, so every loss is computed in float32 even when
    training runs under bf16 autocast."""

    def forward(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type=student.embedding.device.type, enabled=False):
            return self.terms(float_features(student), float_features(teacher, detach=True), batch)

    def terms(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named, weighted float32 scalar loss terms from float32 features."""
        raise NotImplementedError


def conv_adapter(c_in: int, c_out: int) -> nn.Module:
    """Learned 1×1 conv from the student's width to the teacher's; identity when they are equal."""
    return nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, kernel_size=1, bias=False)


def linear_adapter(c_in: int, c_out: int) -> nn.Module:
    """Learned linear map from the student's token width to the teacher's; identity when equal."""
    return nn.Identity() if c_in == c_out else nn.Linear(c_in, c_out, bias=False)


def resize_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) → (B, C, *size): average pooling to shrink, bilinear interpolation to grow."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if h >= size[0] and w >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def pair_by_depth(n_student: int, n_teacher: int) -> list[int]:
    """For each of ``n_student`` student stages, the teacher stage at the same relative depth.

    Equal counts pair one to one; otherwise student stage i (of n_s) takes teacher stage
    round(i·(n_t−1)/(n_s−1)), so the first and the last stages always pair with each other.
    """
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"need at least one stage on each side, got {n_student} student and {n_teacher} teacher")
    if n_student == 1:
        return [n_teacher - 1]
    return [round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)]


def stage_dims(context: DistillContext) -> tuple[list[int], list[int]]:
    """Widths of the student's and the teacher's stage-end blocks; raises if the context has no stages."""
    if not context.student_stages or not context.teacher_stages:
        raise ValueError("this distiller reads encoder stages, but the backbone describes none (stage_ends)")
    if not context.student_block_dims or not context.teacher_block_dims:
        raise ValueError("this distiller needs the encoder block widths (student_block_dims / teacher_block_dims)")
    s_dims = [context.student_block_dims[i] for i in context.student_stages]
    t_dims = [context.teacher_block_dims[i] for i in context.teacher_stages]
    return s_dims, t_dims


def bernoulli_kl(t_logits: torch.Tensor, s_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-pixel KL(Bern(σ(t/T)) ‖ Bern(σ(s/T))), elementwise (same shape as the inputs).

    A one-channel mask logit z is the two-class softmax over (0, z), so this is the KD loss of
    Hinton et al. for one binary "pixel classifier" per pixel, summed over its two classes.
    """
    t, s = t_logits / temperature, s_logits / temperature
    p_t = torch.sigmoid(t)
    log_pt, log_1mpt = F.logsigmoid(t), F.logsigmoid(-t)
    log_ps, log_1mps = F.logsigmoid(s), F.logsigmoid(-s)
    return p_t * (log_pt - log_ps) + (1 - p_t) * (log_1mpt - log_1mps)
