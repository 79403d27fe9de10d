"""Series adapters (Houlsby-style bottlenecks), the default InfoSAM student.

InfoSAM's code (``ImageEncoderViTWithFuseMutable``, adapter type 0) adds to each adapted block::

    x = x + Adapter(attn(norm1(x)))        # space adapter after attention
    x = x + Adapter(mlp(norm2(x)))         # MLP adapter after the MLP
    Adapter(h) = h + W_up · GELU(W_down · h),   W_down: D → ratio·D

in blocks 2..end, and trains the adapters, the LayerNorms of adapted blocks and the whole mask
decoder. Here the adapters wrap ``block.attn`` and ``block.mlp`` (any block exposing both, so the
same code serves SAM ViT and TinyViT blocks; per-token layers commute with window partitioning).

``zero_init=True`` (default) zero-initialises W_up so the wrapped model equals the pretrained one at
step 0; the public code keeps PyTorch's default init (``zero_init=false`` reproduces it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from bench.backbones import Backbone

from ._base import PEFT_METHODS, PeftMethod, select_blocks


@dataclass
class AdapterOptions:
    ratio: float = 0.25  # bottleneck width as a fraction of the block width
    start_block: int = 2  # first adapted encoder block (InfoSAM: blocks 0-1 have none)
    end_block: Optional[int] = None  # exclusive; None = through the last block
    zero_init: bool = True  # identity at init; False = the public code's default init
    train_norms: bool = True  # train the LayerNorms of adapted blocks (InfoSAM --unfrozen_norm)

    def __post_init__(self) -> None:
        if not 0 < self.ratio <= 4:
            raise ValueError(f"ratio must be in (0, 4], got {self.ratio}")
        if self.start_block < 0:
            raise ValueError(f"start_block must be >= 0, got {self.start_block}")


class Bottleneck(nn.Module):
    """``h + up(GELU(down(h)))`` with a ``ratio``-wide hidden layer."""

    def __init__(self, dim: int, ratio: float, zero_init: bool) -> None:
        super().__init__()
        hidden = max(1, int(dim * ratio))
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        if zero_init:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


class SeriesWrap(nn.Module):
    """Runs ``base`` then the adapter on its output; keeps ``base`` as a submodule."""

    def __init__(self, base: nn.Module, adapter: nn.Module) -> None:
        super().__init__()
        self.base_layer = base
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.base_layer(x))


def block_width(block: nn.Module) -> int:
    """Output width of a block's attention (= the residual stream width)."""
    return int(block.attn.proj.out_features)


@PEFT_METHODS.register("adapter")
class Adapter(PeftMethod):
    """Series adapters after attention and MLP of blocks ``start_block..end``."""

    Options = AdapterOptions

    def inject(self, backbone: Backbone) -> list[str]:
        o: AdapterOptions = self.options
        names = []
        for i, block in select_blocks(backbone, o.start_block, o.end_block):
            dim = block_width(block)
            block.attn = SeriesWrap(block.attn, Bottleneck(dim, o.ratio, o.zero_init))
            block.mlp = SeriesWrap(block.mlp, Bottleneck(dim, o.ratio, o.zero_init))
            if o.train_norms:
                for module in block.modules():
                    if isinstance(module, nn.LayerNorm):
                        module.requires_grad_(True)
            names.append(f"encoder_blocks.{i}")
        return names
