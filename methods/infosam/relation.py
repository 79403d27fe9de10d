"""InfoSAM relation module: a score map between the image embedding and the mask token (§4.2, Fig. 3).

Paper: InfoSAM, Zhang et al., ICML 2025, https://arxiv.org/abs/2505.21920 (Eqs. 8–9, App. F.3).

For image tokens x_j = LN_i(z_i)[:, j] (h·w tokens of width C) and the mask token m = LN_m(z_m):

    S_j = (W_Q m)·(W_K x_j) / √D  +  m·x_j          (Eq. 9: projected "linear" term + residual dot)
    r   = S.flatten() / ‖S.flatten()‖₂               (one ℓ2-normalised row per sample)

``kind`` selects the architectures of Table 13 (App. F.3 compares "direct dot product, a linear layer,
multiple attention layers, and our proposed RM"). Our readings:

* ``"attn"`` (the proposed RM, "Attn-1" with ``layers=1``): both terms, as in the official
  ``distiller/relation_model.py`` (separate LayerNorms for z_i and z_m, ``nn.Linear`` with bias for
  W_Q and W_K). "Attn-n" is n attention layers stacked along the mask-token path: each of the first
  n − 1 layers computes the same scores, softmax-attends over the image tokens and adds the read-out
  (value and output projections, output projection zero-initialised) to the mask token; the last layer's
  scores are the relation. The image tokens are not updated, and there is no MLP. Because of the zero
  initialisation, Attn-n computes exactly what Attn-1 computes at step 0.
* ``"dot"`` ("Dot Product"): only the residual term m·x_j. We keep both LayerNorms (with their affine
  weights) so that ``dot`` is exactly ``attn`` without W_Q/W_K: at initialisation it equals ``attn`` with
  W_Q = W_K = 0. Its only trainable parameters are the LayerNorm weights and biases.
  ``relation_frozen=True`` (in the distiller) makes it parameter-free. For the raw-feature dot product
  with no LayerNorm, see :class:`FixedDotRelation`.
* ``"linear"`` ("Linear"): only the projected term (W_Q m)·(W_K x_j)/√D, with no residual. F.3 says only
  "a linear layer". The official code calls this term ``linear_attn_scores`` and the dot term
  ``residual_attn_scores``, so we read "Linear" as the linear-projection scores alone. With that reading
  ``dot``, ``linear`` and ``attn`` split Eq. 9 cleanly into its parts.

State-dict keys of the scoring layer (``layer_norm_feat``, ``layer_norm_mask``, ``query_proj``,
``key_proj``) follow the official module, so a relation module saved by the official code loads here.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .renyi import compute_dtype, no_autocast

RELATION_KINDS = ("attn", "linear", "dot")


def _tokens(z_i: torch.Tensor, z_m: torch.Tensor, dim: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes and return image tokens (B, h*w, C) and mask tokens (B, N, C) in compute dtype."""
    if z_i.dim() != 4:
        raise ValueError(f"image embedding z_i must be (B, C, h, w), got shape {tuple(z_i.shape)}")
    if z_m.dim() == 2:
        z_m = z_m.unsqueeze(1)
    if z_m.dim() != 3:
        raise ValueError(f"mask token z_m must be (B, C) or (B, N, C), got shape {tuple(z_m.shape)}")
    if z_i.shape[0] != z_m.shape[0] or z_i.shape[1] != z_m.shape[-1]:
        raise ValueError(f"z_i {tuple(z_i.shape)} and z_m {tuple(z_m.shape)} disagree in batch size or channel width")
    if dim is not None and z_i.shape[1] != dim:
        raise ValueError(f"relation module built for width {dim}, got features of width {z_i.shape[1]}")
    dtype = compute_dtype(z_i)
    return z_i.flatten(2).transpose(1, 2).to(dtype), z_m.to(dtype)


def _normalize_rows(scores: torch.Tensor) -> torch.Tensor:
    """(B, N, h*w) scores -> (B, N*h*w), ℓ2-normalised per sample."""
    return F.normalize(scores.reshape(scores.shape[0], -1), dim=1)


def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    bias = None if layer.bias is None else layer.bias.to(x.dtype)
    return F.linear(x, layer.weight.to(x.dtype), bias)


def _layer_norm(layer: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, layer.normalized_shape, layer.weight.to(x.dtype), layer.bias.to(x.dtype), layer.eps)


class _Scores(nn.Module):
    """One scoring layer: LayerNorms, optional W_Q/W_K, and the terms of Eq. 9 selected by ``kind``."""

    def __init__(self, dim: int, proj_dim: int, kind: str, eps: float) -> None:
        super().__init__()
        self.kind = kind
        self.scale = proj_dim**-0.5
        self.layer_norm_feat = nn.LayerNorm(dim, eps=eps)
        self.layer_norm_mask = nn.LayerNorm(dim, eps=eps)
        if kind != "dot":
            self.query_proj = nn.Linear(dim, proj_dim)
            self.key_proj = nn.Linear(dim, proj_dim)

    def forward(self, feat: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feat (B, L, C), mask (B, N, C) -> scores (B, N, L) and the normalised image tokens (B, L, C)."""
        feat = _layer_norm(self.layer_norm_feat, feat)
        mask = _layer_norm(self.layer_norm_mask, mask)
        terms = []
        if self.kind != "dot":
            q, k = _linear(self.query_proj, mask), _linear(self.key_proj, feat)
            terms.append(q @ k.transpose(1, 2) * self.scale)
        if self.kind != "linear":
            terms.append(mask @ feat.transpose(1, 2))
        return sum(terms[1:], terms[0]), feat


class _RefineLayer(_Scores):
    """An extra attention layer of Attn-n: scores as in Eq. 9, softmax read-out added to the mask token."""

    def __init__(self, dim: int, proj_dim: int, eps: float) -> None:
        super().__init__(dim, proj_dim, "attn", eps)
        self.value_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def refine(self, feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores, feat_n = self(feat, mask)
        read = scores.softmax(dim=-1) @ _linear(self.value_proj, feat_n)
        return mask + _linear(self.out_proj, read)


class RelationModule(_Scores):
    """Relation r = f(z_i, z_m; θ) between image embedding and mask token (Eq. 9; one instance shared
    by teacher and student).

    Args:
        dim: Channel width C of z_i and z_m (SAM: 256).
        kind: ``"attn"`` (default, the paper's RM), ``"linear"`` or ``"dot"``; see the module docstring.
        layers: Number of attention layers ("Attn-n" of Table 13); > 1 only for ``kind="attn"``.
        proj_dim: Width D of W_Q and W_K (scale 1/√D); defaults to ``dim`` as in the paper.
        eps: LayerNorm epsilon (PyTorch default 1e-5, as in the official module).

    Computation is done in float32 (float64 for float64 input) with autocast off.
    """

    def __init__(
        self,
        dim: int = 256,
        kind: str = "attn",
        layers: int = 1,
        proj_dim: Optional[int] = None,
        eps: float = 1e-5,
    ) -> None:
        if kind not in RELATION_KINDS:
            raise ValueError(f"unknown relation kind {kind!r}; valid: {RELATION_KINDS}")
        if layers < 1 or (layers > 1 and kind != "attn"):
            raise ValueError(f"layers must be >= 1, and > 1 only with kind='attn'; got {layers} ({kind})")
        proj_dim = dim if proj_dim is None else proj_dim
        if dim < 1 or proj_dim < 1:
            raise ValueError(f"dim and proj_dim must be positive, got {dim} and {proj_dim}")
        super().__init__(dim, proj_dim, kind, eps)
        self.dim = dim
        self.refine_layers = nn.ModuleList(_RefineLayer(dim, proj_dim, eps) for _ in range(layers - 1))

    def forward(self, z_i: torch.Tensor, z_m: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Compute the relation.

        Args:
            z_i: Image embedding, (B, C, h, w).
            z_m: Mask token, (B, C) (or (B, N, C) for N mask tokens).

        Returns:
            r: (B, N*h*w), each row ℓ2-normalised (float32, or float64 for float64 input).
        """
        with no_autocast(z_i):
            feat, mask = _tokens(z_i, z_m, self.dim)
            for layer in self.refine_layers:
                mask = layer.refine(feat, mask)
            scores, _ = super().forward(feat, mask)
            return _normalize_rows(scores)


class FixedDotRelation(nn.Module):
    """Parameter-free relation: raw dot product z_m·z_i per token, ℓ2-normalised per sample.

    The "fixed-dot relation module" of Table 4, row 2 (§5.4). It does what the official
    ``DualMiLoss.compute_relation_dot`` helper does: no LayerNorm and no projection.
    """

    def forward(self, z_i: torch.Tensor, z_m: torch.Tensor) -> torch.Tensor:
        """z_i (B, C, h, w), z_m (B, C) or (B, N, C) -> r (B, N*h*w)."""
        with no_autocast(z_i):
            feat, mask = _tokens(z_i, z_m, None)
            return _normalize_rows(mask @ feat.transpose(1, 2))
