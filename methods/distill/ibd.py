"""IBD: information-bottleneck distillation (Kuang et al., NeurIPS 2023), its distillation objective only.

Paper: Kuang et al., "Improving Adversarial Robustness via Information Bottleneck Distillation",
NeurIPS 2023. Public code: github.com/SkyKuang/IBD, ``defense/IBD_module.py``. The public training
step mixes adversarial training into the objective:
``0.2·KL(s(x) ‖ t(x+n)) + 0.8·KL(s(x_adv) ‖ t(x+n)) + 0.8·L_IBD(feats_s(x_adv), feats_t(x+n))``
with x_adv from a 10-step PGD attack (ε 8/255) and n ~ 0.001·N(0, 1).

**Kept** (the distillation objective):

* L_IBD, the attention-based cross-layer feature term (the paper's MI-maximisation proxy): the
  query of teacher layer j is Linear+BN of its channel mean; the key of student layer i is
  Linear+BN+ReLU of its channel mean, turned by a bilinear Linear+BN into one key per teacher layer;
  logits = (⟨key_ij, query_j⟩ + ⟨p_t,j, p_s,i⟩) / √d with learned positional vectors p_t, p_s
  (Xavier-normal); attention = softmax over student layers. Values are spatial energy maps
  (mean over channels of f²), the student's average-pooled to each teacher layer's grid, all
  L2-normalised; L_IBD = Σ_j mean_b Σ_i att_bji · mean_pos (v_s,i − v_t,j)². d = qk_dim = 128.
* The soft-label KL to the teacher's prediction, per mask pixel (the binary KL of
  :func:`methods.distill._common.bernoulli_kl`, temperature 1 as in the code).

**Dropped**: the PGD attack (x_adv = x here, so the two KL terms merge into one with weight
0.2 + 0.8 = 1.0 and L_IBD uses clean student features), the input noise on the teacher's side (the
frozen teacher's features are cached per image), and the separate SGD optimizer (lr 0.1) of the
attention module: its parameters are trained by the run's optimizer like every distiller's.

Adaptation to SAM: the layers are the encoder stages (``context.*_stages``; the public code uses every
residual block of its WRN/ResNet, which for a ViT would cache every block of the teacher), so the
width of each student and teacher layer may differ freely (the key/query layers map them to d).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.contracts.distill import DISTILLERS, DistillContext, Features

from ._common import FeatureDistiller, bernoulli_kl, check_weight, resize_map, stage_dims


def energy_map(f: torch.Tensor) -> torch.Tensor:
    """Spatial energy of a (B, C, h, w) map: mean over channels of f², (B, 1, h, w)."""
    return f.pow(2).mean(dim=1, keepdim=True)


def ibd_feature_loss(att: torch.Tensor, v_s: list[torch.Tensor], v_t: list[torch.Tensor]) -> torch.Tensor:
    """Attention-weighted cross-layer distance of L2-normalised energy maps.

    Args:
        att: (B, n_t, n_s) attention over student layers for each teacher layer (rows sum to 1).
        v_s: Per teacher layer j, the student values pooled to its grid, (B, n_s, P_j).
        v_t: Per teacher layer j, its values, (B, P_j).

    Returns:
        Σ_j mean_b Σ_i att[b, j, i] · mean_p (v_s[j][b, i, p] − v_t[j][b, p])².
    """
    total = att.new_zeros(())
    for j, (vs, vt) in enumerate(zip(v_s, v_t)):
        diff = (vs - vt.unsqueeze(1)).pow(2).mean(dim=2)  # (B, n_s)
        total = total + (diff * att[:, j]).sum(dim=1).mean()
    return total


class LinearBN(nn.Module):
    """Linear → BatchNorm1d (→ ReLU): the public code's ``nn_bn_relu``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(c_in, c_out)
        self.bn = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor, relu: bool) -> torch.Tensor:
        y = self.bn(self.linear(x))
        return F.relu(y) if relu else y


@dataclass
class IBDOptions:
    """Options of the IBD distiller (defaults: the public code's ``Dist_Module``)."""

    feature_weight: float = field(default=0.8, metadata={"help": "weight b of the feature term L_IBD (code: 0.8)"})
    kl_weight: float = field(
        default=1.0,
        metadata={"help": "weight of the soft-label KL (code: 0.2 clean + 0.8 adversarial; no attack here, so 1.0)"},
    )
    qk_dim: int = field(default=128, metadata={"help": "width d of the attention queries/keys (code: 128)"})

    def __post_init__(self) -> None:
        check_weight("feature_weight", self.feature_weight)
        check_weight("kl_weight", self.kl_weight)
        if isinstance(self.qk_dim, bool) or not isinstance(self.qk_dim, int) or self.qk_dim < 1:
            raise ValueError(f"qk_dim must be an int >= 1, got {self.qk_dim!r}")


@DISTILLERS.register("ibd")
class IBD(FeatureDistiller):
    """IBD's distillation objective; returns ``{"l_ibd": feature_weight·L_IBD, "l_kl": kl_weight·KL}``."""

    Options = IBDOptions

    def __init__(self, options: IBDOptions, context: DistillContext) -> None:
        super().__init__(options, context)
        s_dims, t_dims = stage_dims(context)
        self.student_blocks = tuple(context.student_stages)
        self.teacher_blocks = tuple(context.teacher_stages)
        d = options.qk_dim
        self.query = nn.ModuleList(LinearBN(c, d) for c in t_dims)
        self.key = nn.ModuleList(LinearBN(c, d) for c in s_dims)
        self.bilinear = LinearBN(d, d * len(t_dims))
        self.p_t = nn.Parameter(nn.init.xavier_normal_(torch.empty(len(t_dims), d)))
        self.p_s = nn.Parameter(nn.init.xavier_normal_(torch.empty(len(s_dims), d)))

    def attention(self, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor]) -> torch.Tensor:
        """(B, n_t, n_s) softmax attention of each teacher layer over the student layers."""
        b, n_s, n_t, d = s_feats[0].shape[0], len(s_feats), len(t_feats), self.options.qk_dim
        query = torch.stack([q(f.mean(dim=(2, 3)), relu=False) for q, f in zip(self.query, t_feats)], dim=1)
        key = torch.stack([k(f.mean(dim=(2, 3)), relu=True) for k, f in zip(self.key, s_feats)], dim=1)
        bilinear_key = self.bilinear(key.reshape(b * n_s, d), relu=False).view(b, n_s, n_t, d)
        logits = torch.einsum("bstq,btq->bts", bilinear_key, query) + self.p_t @ self.p_s.t()
        return F.softmax(logits / math.sqrt(d), dim=2)

    def terms(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        s_feats = [student.blocks[i] for i in self.student_blocks]
        t_feats = [teacher.blocks[j] for j in self.teacher_blocks]
        att = self.attention(s_feats, t_feats)
        s_energy = [energy_map(f) for f in s_feats]
        v_s, v_t = [], []
        for f in t_feats:
            size = f.shape[-2:]
            pooled = torch.cat([F.adaptive_avg_pool2d(e, size) for e in s_energy], dim=1)  # (B, n_s, h, w)
            v_s.append(F.normalize(pooled.flatten(2), dim=2))
            v_t.append(F.normalize(energy_map(f).flatten(1), dim=1))
        t_logits = resize_map(teacher.logits, tuple(student.logits.shape[-2:]))
        return {
            "l_ibd": self.options.feature_weight * ibd_feature_loss(att, v_s, v_t),
            "l_kl": self.options.kl_weight * bernoulli_kl(t_logits, student.logits).mean(),
        }
