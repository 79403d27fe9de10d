"""MobileSAM's decoupled distillation: MSE between the student's and the teacher's image embeddings.

Paper: Zhang et al., "Faster Segment Anything: Towards Lightweight SAM for Mobile Applications",
2023, https://arxiv.org/abs/2306.14289 (§3, "decoupled distillation": the image encoder is distilled
alone with a plain MSE loss on the embedding; the mask decoder is reused). The official repository
(ChaoningZhang/MobileSAM) has no training code; the third-party re-implementation
``liuguoyou/MobileSAM-pytorch/train.py`` uses ``sqrt(mean_b Σ_c (s − t)²)``. We follow the paper:
``weight · mean((z_i^S − z_i^T)²)``.

Adaptation: here MobileSAM is not a compression recipe but an extra term while the adapter student
and the mask decoder are fine-tuned (InfoSAM Table 2). When the embedding widths differ, a learned
1×1 conv (owned by this distiller) maps the student's embedding to the teacher's width; when the grids
differ, the teacher's embedding is resized to the student's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from bench.contracts.distill import DISTILLERS, DistillContext, Features

from ._common import FeatureDistiller, check_weight, conv_adapter, resize_map


def embedding_mse(s_embedding: torch.Tensor, t_embedding: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element of two (B, C, h, w) embeddings."""
    return F.mse_loss(s_embedding, t_embedding)


@dataclass
class MobileSAMOptions:
    """Options of the MobileSAM distiller."""

    weight: float = field(default=1.0, metadata={"help": "weight of the embedding MSE (the paper uses MSE alone)"})

    def __post_init__(self) -> None:
        check_weight("weight", self.weight)


@DISTILLERS.register("mobilesam", feature_matching=True)
class MobileSAMDistiller(FeatureDistiller):
    """Image-embedding MSE; returns ``{"l_embed": weight · MSE}``."""

    Options = MobileSAMOptions

    def __init__(self, options: MobileSAMOptions, context: DistillContext) -> None:
        super().__init__(options, context)
        self.adapter = conv_adapter(context.student_embed_dim, context.teacher_embed_dim)

    def terms(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        s = self.adapter(student.embedding)
        t = resize_map(teacher.embedding, tuple(s.shape[-2:]))
        return {"l_embed": self.options.weight * embedding_mse(s, t)}
