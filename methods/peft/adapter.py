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

from torch import nn

from bench.backbones import Backbone
from bench.contracts.peft import PEFT_METHODS, PeftMethod, select_blocks

from ._layers import Bottleneck, ParallelWrap, SeriesWrap, block_width, branch_in_width, unfreeze_norms

__all__ = [
    "PLACEMENTS",
    "Adapter",
    "AdapterOptions",
    "Bottleneck",
    "ParallelWrap",
    "SeriesWrap",
    "block_width",
    "branch_in_width",
    "unfreeze_norms",
]

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
