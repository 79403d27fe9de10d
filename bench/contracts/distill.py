"""The distiller contract: an ``nn.Module`` that turns student and teacher features into loss terms.

The trainer runs the frozen teacher on the same images and prompts as the student, collects the
features a distiller asks for, and adds the returned terms to the structure loss. A distiller
owns its trainable parts (regressors, relation module) as submodules, so the optimizer finds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import nn

from bench.registry import Registry


@dataclass
class Features:
    """What one model (student or teacher) produced for a batch.

    Attributes:
        embedding: Image embedding z_i fed to the mask decoder, (B, C, h, w).
        mask_token: z_m, the decoder-transformer output of the first mask token, (B, C).
        logits: Low-resolution mask logits, (B, 1, H', W').
        iou: Predicted IoU, (B, 1).
        blocks: Requested intermediate encoder block outputs, block index -> (B, C_l, h_l, w_l).
    """

    embedding: torch.Tensor
    mask_token: torch.Tensor
    logits: torch.Tensor
    iou: torch.Tensor
    blocks: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class DistillContext:
    """Facts a distiller may need when it is built (feature widths differ when the teacher is larger).

    Attributes:
        student_embed_dim / teacher_embed_dim: Width C of the image embedding and decoder tokens.
        student_block_dims / teacher_block_dims: Output width of every encoder block, in block order.
        student_stages / teacher_stages: Block index ending each encoder stage
            (:meth:`bench.backbones.Backbone.stage_ends`); multi-layer distillers read these blocks.
    """

    student_embed_dim: int
    teacher_embed_dim: int
    student_block_dims: list[int] = field(default_factory=list)
    teacher_block_dims: list[int] = field(default_factory=list)
    student_stages: list[int] = field(default_factory=list)
    teacher_stages: list[int] = field(default_factory=list)

    @classmethod
    def between(cls, student: Any, teacher: Any) -> "DistillContext":
        """The context of a student and a teacher backbone (:class:`bench.contracts.backbone.Backbone`)."""
        return cls(
            student_embed_dim=student.embed_dim,
            teacher_embed_dim=teacher.embed_dim,
            student_block_dims=student.block_dims(),
            teacher_block_dims=teacher.block_dims(),
            student_stages=student.stage_ends(),
            teacher_stages=teacher.stage_ends(),
        )


class Distiller(nn.Module):
    """Base class. Subclasses set ``Options`` (a dataclass) and implement :meth:`forward`.

    Attributes:
        Options: dataclass of the distiller's options (loss weights, temperatures ...).
        student_blocks / teacher_blocks: encoder block indices whose outputs the distiller needs
            (filled into ``Features.blocks``); empty for distillers that use only the embedding. Set
            them in ``__init__`` from the context (e.g. ``context.student_stages``): they depend on
            the backbone.
        unsupported: Backbone families (``Backbone.family``) the distiller cannot work with, as student
            or as teacher, each with the reason; the launcher refuses those runs.
    """

    Options: ClassVar[type] = object
    unsupported: ClassVar[dict[str, str]] = {}
    student_blocks: tuple[int, ...] = ()
    teacher_blocks: tuple[int, ...] = ()

    def __init__(self, options: Any, context: DistillContext) -> None:
        super().__init__()
        self.options = options
        self.context = context

    def forward(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Return named, already weighted loss terms (each a scalar tensor)."""
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, probe: Callable[[], tuple[Features, Optional[Features]]], run_dir: Path) -> None:
        """Called after every epoch (1-based); ``probe()`` computes (student, teacher) features of a fixed
        batch of test images without gradients. Default: nothing."""

    def save_artifacts(self, run_dir: Path) -> None:
        """Write what later runs may reuse (e.g. a trained relation module) into ``run_dir``."""


DISTILLERS: Registry[type[Distiller]] = Registry("distiller", "methods")
"""Distillers, registered with ``@DISTILLERS.register("name", **properties)`` in any module under ``methods/``.

Declared properties (the contract tests read them; default False unless noted):
    feature_matching: every term is zero when the student's features equal the teacher's.
    owns_parameters: the distiller has trainable parts (regressors, attention ...); default True.
    same_embed_width: student and teacher must have the same embedding width (a module shared by both).
"""
