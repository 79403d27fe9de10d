"""Bottleneck adapters in series, in parallel or mixed (InfoSAM adapter types 0/1/2, SU-SAM variants).

InfoSAM's code (``segment_anything/modeling/image_encoder.py``, ``Block``, MuyaoYuan/InfoSAM
``ec8f9ab``) with ``Adapter(h) = W_up·GELU(W_down·h)`` (``W_down: D → ratio·D``), ``xn1 = norm1(x)``,
``s = 0.5``:

* ``placement="series"`` (type 0, the default InfoSAM student)::

      x = x + A_s(attn(xn1))                 A_s(h) = h + Adapter(h)   (skip adapter)
      x = x + A_m(mlp(norm2(x)))

* ``placement="parallel"`` (type 1)::

      x = x + attn(xn1) + s·Adapter(xn1)
      x = x + mlp(xn2) + s·Adapter(xn2)      xn2 = norm2(x)

* ``placement="mixed"`` (type 2): series on attention, parallel on the MLP.

SU-SAM (zongzi13545329/SimAda, ``image_encoder_{series,para,mix}.py``) has the same three variants;
its series MLP adapter carries an extra 0.5 factor, InfoSAM's (reproduced here) does not.

The adapters wrap ``block.attn`` and ``block.mlp`` (so SAM ViT and TinyViT blocks share the code;
per-token layers commute with window partitioning). A parallel branch reads the wrapped module's
input: in SAM blocks that is already ``norm1(x)`` (window-partitioned) or ``norm2(x)``; TinyViT's
``attn`` and ``mlp`` apply their own LayerNorm first (``attn.norm``, ``mlp.norm``), and the wrapper
feeds the adapter that normalised input, as in InfoSAM's formula.

SAM2 Hiera blocks (``MultiScaleBlock``): series adapters and MLP adapters need nothing special (they
act at the block's output width ``dim_out``). A parallel *attention* branch reads ``norm1(x)`` at the
input width ``dim``; in the first block of a stage the attention also pools its queries (2×2 max
pool) and widens ``dim → dim_out``, so there the branch pools its input with the attention's own
``q_pool`` and its bottleneck maps ``dim → dim_out`` (an adaptation, not in InfoSAM's ViT code). For
SAM ViT and TinyViT blocks nothing changes (``q_pool`` absent, ``dim == dim_out``).

``zero_init=True`` (default) zero-initialises W_up so the wrapped model equals the pretrained one at
step 0; the public code keeps PyTorch's default init (``zero_init=false`` reproduces it). Trained:
the adapters, the LayerNorms of adapted blocks (``--unfrozen_norm``) and the mask decoder (but the parts no
loss reads: :func:`bench.contracts.peft.unused_decoder_modules`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from bench.backbones import Backbone
from bench.contracts.peft import PEFT_METHODS, PeftMethod, select_blocks

PLACEMENTS = ("series", "parallel", "mixed")


@dataclass
class AdapterOptions:
    ratio: float = field(default=0.25, metadata={"help": "bottleneck width as a fraction of the block width"})
    start_block: int = field(default=2, metadata={"help": "first adapted block (InfoSAM: blocks 0-1 have none)"})
    end_block: Optional[int] = field(default=None, metadata={"help": "exclusive; None = through the last block"})
    zero_init: bool = field(default=True, metadata={"help": "identity at init; False = the public code's init"})
    train_norms: bool = field(default=True, metadata={"help": "train LayerNorms of adapted blocks (--unfrozen_norm)"})
    placement: str = field(default="series", metadata={"help": "series | parallel | mixed (InfoSAM types 0/1/2)"})
    parallel_scale: float = field(default=0.5, metadata={"help": "scale s of parallel branches (InfoSAM: 0.5)"})

    def __post_init__(self) -> None:
        if not 0 < self.ratio <= 4:
            raise ValueError(f"ratio must be in (0, 4], got {self.ratio}")
        if self.start_block < 0:
            raise ValueError(f"start_block must be >= 0, got {self.start_block}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {list(PLACEMENTS)}, got {self.placement!r}")


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


@PEFT_METHODS.register("adapter")
class Adapter(PeftMethod):
    """Bottleneck adapters on attention and MLP of blocks ``start_block..end`` (series/parallel/mixed)."""

    Options = AdapterOptions

    def inject(self, backbone: Backbone) -> list[str]:
        o: AdapterOptions = self.options
        names = []
        for i, block in select_blocks(backbone, o.start_block, o.end_block):
            dim = block_width(block)
            block.attn = self._wrap(block.attn, dim, parallel=o.placement == "parallel")
            block.mlp = self._wrap(block.mlp, dim, parallel=o.placement != "series")
            if o.train_norms:
                unfreeze_norms(block)
            names.append(f"encoder_blocks.{i}")
        return names

    def _wrap(self, base: nn.Module, dim: int, parallel: bool) -> nn.Module:
        o: AdapterOptions = self.options
        if parallel:
            branch = Bottleneck(dim, o.ratio, o.zero_init, skip=False, in_dim=branch_in_width(base))
            return ParallelWrap(base, branch, o.parallel_scale)
        return SeriesWrap(base, Bottleneck(dim, o.ratio, o.zero_init))
