"""AdaptFormer (Chen et al., NeurIPS 2022, https://arxiv.org/abs/2205.13535): a parallel bottleneck
beside the MLP of every block::

    x = x + mlp(xn) + s·Adapter(xn),    xn = norm2(x),    Adapter(h) = W_up·act(W_down·h)

Settings follow InfoSAM's re-implementation (adapter type 5 in ``segment_anything/modeling/
image_encoder.py``, MuyaoYuan/InfoSAM ``ec8f9ab``): the branch reads ``norm2(x)``, ``s = 0.5``,
bottleneck ``ratio·D`` with ratio 0.25 and GELU. The official AdaptFormer (ShoufaChen/AdaptFormer,
``Block.forward`` with ``ffn_option="parallel"``) differs: ``adapt_x = adaptmlp(x)`` reads the
*un-normalised* residual stream x (its ``Adapter`` may carry its own LayerNorm,
``adapter_layernorm_option``), ``s = 0.1``, a 64-wide bottleneck, ReLU, dropout 0.1, "lora" init
(down kaiming-uniform, up and biases zero), and no LayerNorm of the block trains. ``scale`` and
``ratio`` are options; the un-normalised input and the fixed width 64 are not offered.

Blocks: the AdaptFormer paper adapts every block (``start_block=0``, default); the InfoSAM scripts
for this baseline are not public, so which blocks it adapted there is unknown (its adapter student
skips blocks 0–1: set ``start_block=2`` to match that).

The wrapper (``ParallelWrap`` from :mod:`adapter`) wraps ``block.mlp``. SAM's ``MLPBlock`` receives
``norm2(x)``; TinyViT's ``Mlp`` normalises internally (``mlp.norm``) and the branch is fed that
normalised input. ``W_up`` is zero-initialised (as in AdaptFormer's code) → identity at init.
Trains the adapters (+ LayerNorms of adapted blocks if ``train_norms``) and the mask decoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from bench.backbones import Backbone
from bench.contracts.peft import PEFT_METHODS, PeftMethod, select_blocks

from ._layers import Bottleneck, ParallelWrap, block_width, unfreeze_norms


@dataclass
class AdaptFormerOptions:
    ratio: float = field(default=0.25, metadata={"help": "bottleneck width / block width (InfoSAM: 0.25)"})
    scale: float = field(default=0.5, metadata={"help": "branch scale s (InfoSAM code: 0.5; AdaptFormer paper: 0.1)"})
    start_block: int = field(default=0, metadata={"help": "first adapted block (AdaptFormer: all blocks)"})
    end_block: Optional[int] = field(default=None, metadata={"help": "exclusive; None = through the last block"})
    train_norms: bool = field(default=False, metadata={"help": "also train the LayerNorms of adapted blocks"})

    def __post_init__(self) -> None:
        if not 0 < self.ratio <= 4:
            raise ValueError(f"ratio must be in (0, 4], got {self.ratio}")
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if self.start_block < 0:
            raise ValueError(f"start_block must be >= 0, got {self.start_block}")


@PEFT_METHODS.register("adaptformer")
class AdaptFormer(PeftMethod):
    """Parallel MLP adapters (``block.mlp`` → ``ParallelWrap``) in blocks ``start_block..end``."""

    Options = AdaptFormerOptions

    def inject(self, backbone: Backbone) -> list[str]:
        o: AdaptFormerOptions = self.options
        names = []
        for i, block in select_blocks(backbone, o.start_block, o.end_block):
            dim = block_width(block)
            block.mlp = ParallelWrap(block.mlp, Bottleneck(dim, o.ratio, zero_init=True, skip=False), o.scale)
            if o.train_norms:
                unfreeze_norms(block)
            names.append(f"encoder_blocks.{i}.mlp")
        return names
