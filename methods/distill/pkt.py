"""PKT: probabilistic knowledge transfer on the pooled image embeddings.

Paper: Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer",
ECCV 2018 (and Passalis et al., TNNLS 2020, which InfoSAM cites). Code followed: RepDistiller
``distiller_zoo/PKT.py``: rows L2-normalised (eps 1e-7, NaN → 0), cosine similarities mapped to
(c + 1) / 2, rows normalised to conditional probabilities, then
``mean(P_t · log((P_t + eps) / (P_s + eps)))``; weight β = 30000 (``run_cifar_distill.sh -b 30000``).

Adaptation to SAM: RepDistiller applies PKT to the pooled penultimate features; here it is the
image embedding z_i, global-average-pooled to (B, C). The loss compares B×B similarity matrices, so
any student and teacher widths work without an adapter (and the distiller has no parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from bench.contracts.distill import DISTILLERS, DistillContext, Features

from ._common import FeatureDistiller, check_weight

EPS = 1e-7


def _conditional_probabilities(x: torch.Tensor, eps: float) -> torch.Tensor:
    x = x / (x.norm(dim=1, keepdim=True) + eps)
    x = torch.nan_to_num(x, nan=0.0)
    sim = (x @ x.t() + 1.0) / 2.0
    return sim / sim.sum(dim=1, keepdim=True)


def pkt_loss(s_feat: torch.Tensor, t_feat: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """PKT between (B, D_s) and (B, D_t) feature vectors (any widths).

    Returns:
        mean over the B×B entries of P_t · log((P_t + eps) / (P_s + eps)).
    """
    p_s = _conditional_probabilities(s_feat.flatten(1), eps)
    p_t = _conditional_probabilities(t_feat.flatten(1), eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


@dataclass
class PKTOptions:
    """Options of the PKT distiller."""

    weight: float = field(default=30000.0, metadata={"help": "weight β (RepDistiller/mdistiller 30000)"})

    def __post_init__(self) -> None:
        check_weight("weight", self.weight)


@DISTILLERS.register("pkt", feature_matching=True, owns_parameters=False)
class PKT(FeatureDistiller):
    """PKT on globally pooled image embeddings; returns ``{"l_pkt": weight · loss}``."""

    Options = PKTOptions

    def __init__(self, options: PKTOptions, context: DistillContext) -> None:
        super().__init__(options, context)

    def terms(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        s = student.embedding.mean(dim=(2, 3))
        t = teacher.embedding.mean(dim=(2, 3))
        return {"l_pkt": self.options.weight * pkt_loss(s, t)}
