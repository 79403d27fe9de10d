"""PEFT layers shared by the adapter-style methods (Adapter, AdaptFormer, SU-SAM): the bottleneck branch,
the series/parallel wrappers around a block's sub-module, and small helpers reading a block's widths."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["Bottleneck", "ParallelWrap", "SeriesWrap", "block_width", "branch_in_width", "unfreeze_norms"]


class Bottleneck(nn.Module):
    """``[h +] up(GELU(down(h)))`` with a ``ratio``-wide hidden layer; ``skip`` adds the identity.

    ``in_dim`` (default ``dim``) is the input width of a skip-less branch that changes width (Hiera).
    """

    def __init__(
        self, dim: int, ratio: float, zero_init: bool, skip: bool = True, in_dim: Optional[int] = None
    ) -> None:
        super().__init__()
        hidden = max(1, int(dim * ratio))
        self.skip = skip
        self.down = nn.Linear(in_dim or dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        if zero_init:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.up(self.act(self.down(h)))
        return h + out if self.skip else out


class SeriesWrap(nn.Module):
    """Runs ``base`` then the adapter on its output; keeps ``base`` as a submodule."""

    def __init__(self, base: nn.Module, adapter: nn.Module) -> None:
        super().__init__()
        self.base_layer = base
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.base_layer(x))


class ParallelWrap(nn.Module):
    """``base(x) + scale·adapter(n(x))``, ``n`` = the base's own leading LayerNorm if it has one.

    SAM's ``Attention``/``MLPBlock`` receive already-normalised tokens (``n`` = identity); TinyViT's
    ``Attention``/``Mlp`` start with ``self.norm``, which is reused (not copied) for the branch. A Hiera
    attention that pools its queries (``q_pool``) gets the branch input pooled the same way.
    """

    def __init__(self, base: nn.Module, adapter: nn.Module, scale: float) -> None:
        super().__init__()
        self.base_layer = base
        self.adapter = adapter
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = getattr(self.base_layer, "norm", None)
        h = norm(x) if isinstance(norm, nn.LayerNorm) else x
        pool = getattr(self.base_layer, "q_pool", None)
        if pool is not None:  # (B, H, W, C) → pooled like the queries → (B, H/2, W/2, C)
            h = pool(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.base_layer(x) + self.scale * self.adapter(h)


def block_width(block: nn.Module) -> int:
    """Output width of a block's attention (= the residual stream width)."""
    base = getattr(block.attn, "base_layer", block.attn)
    return int(base.proj.out_features)


def branch_in_width(module: nn.Module) -> Optional[int]:
    """Input width of a parallel branch beside ``module`` when it differs from its output width (the
    attention of a dimension-changing Hiera block: ``qkv`` reads ``dim``, ``proj`` writes ``dim_out``)."""
    qkv, proj = getattr(module, "qkv", None), getattr(module, "proj", None)
    if isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and qkv.in_features != proj.out_features:
        return qkv.in_features
    return None


def unfreeze_norms(block: nn.Module) -> None:
    for module in block.modules():
        if isinstance(module, nn.LayerNorm):
            module.requires_grad_(True)
