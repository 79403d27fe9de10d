"""SU-SAM / SimAda (Song et al. 2024): one adapter framework, four placements (``variant``).

SimAda (``zongzi13545329/SimAda``, a Medical-SAM-Adapter fork) keeps one encoder file per variant
in ``models/sam/modeling/`` (reference_implementations.md §3; the block code was read in the same
author's BA-SAM repository, which ships identical ``image_encoder_{series,para,lora}.py`` files).
With ``a = attn(norm1 x)`` (per window), ``xn = norm2(x)``, ``m = mlp(xn)``, ``Ad(h) = W_up GELU(W_down h)``
(``Linear(D → 0.25 D)–GELU–Linear``, ``common.Adapter``) and scale 0.5:

=========  ===========================================  ==========================================
variant    attention branch                             MLP branch
=========  ===========================================  ==========================================
series     ``x + (a + Ad(a))``                          ``x + m + 0.5·Ad(m)``  (see *literal*)
parallel   ``x + (a + 0.5·Ad(a))``  (see *literal*)     ``x + m + 0.5·Ad(xn)``
mixed      ``x + (a + Ad(a))``                          ``x + m + 0.5·Ad(xn)``
lora       LoRA r = 4 on the q and v parts of the fused ``attn.qkv`` (``_LoRA_qkv``, no α/r scale)
=========  ===========================================  ==========================================

*literal*: the SimAda files differ from the table in two places, both of which break identity at
init, so they are opt-in with ``literal=True``:

* ``image_encoder_series.py``: ``x = x + 0.5·MLP_Adapter(mlp(xn))`` with a skip-less MLP_Adapter —
  the pretrained MLP output reaches the residual only through the adapter;
* ``image_encoder_para.py``: ``a + 0.5·Space_Adapter(a)`` with a *skip* Space_Adapter, i.e.
  ``1.5·a + 0.5·Ad(a)`` (the "parallel" attention adapter also reads the attention output, not
  the block input).

Other decisions:

* every encoder block is adapted (SimAda builds every ``Block`` with adapters; no start index);
* default ``variant="mixed"``: Medical-SAM-Adapter's ``-mod sam_adpt`` block (what SimAda's README
  runs) is series-on-attention + parallel-on-MLP, i.e. the "mixed" placement [from memory of MSA,
  routing in SimAda not re-checked];
* up-projections (LoRA B) are zero-initialised so the model equals the pretrained one at init; SimAda
  keeps PyTorch's default ``nn.Linear`` init for both layers (``zero_init=False`` reproduces it);
* only adapter/LoRA weights and the mask decoder train. SimAda itself freezes nothing: its
  ``train.py`` hands ``net.parameters()`` (the whole SAM) to Adam and no file sets
  ``requires_grad`` on the model (read at SimAda HEAD); the "Adapter-only" freezing is
  Medical-SAM-Adapter's ``function.py``, which SimAda drops. Here the encoder (LayerNorms included)
  and the prompt encoder stay frozen, as for every PEFT row. SimAda's unused ``Depth_Adapter``
  (3-D branch) is not created;
* TinyViT blocks (LiteMedSAM): their ``attn``/``mlp`` apply their own LayerNorm inside, so the
  parallel MLP adapter reads ``mlp.norm(x)`` — the same ``xn`` as in SAM blocks. The fused TinyViT
  qkv is laid out per head as [q | k | v] with widths (key_dim, key_dim, d); the LoRA q/v deltas are
  scattered into those columns.

Bottleneck / SeriesWrap / ParallelWrap come from :mod:`methods.peft.adapter` (same formulas).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bench.backbones import Backbone
from bench.config import ConfigError
from bench.contracts.peft import PEFT_METHODS, PeftMethod, select_blocks

from ._layers import Bottleneck, ParallelWrap, SeriesWrap, block_width

VARIANTS = ("series", "parallel", "mixed", "lora")
SCALE = 0.5  # SimAda Block(scale=0.5)


@dataclass
class SUSAMOptions:
    variant: str = field(default="mixed", metadata={"help": f"adapter placement, one of {VARIANTS}"})
    ratio: float = field(default=0.25, metadata={"help": "adapter bottleneck width as a fraction of D (SimAda 0.25)"})
    rank: int = field(default=4, metadata={"help": "LoRA rank of the 'lora' variant (SimAda r = 4)"})
    zero_init: bool = field(
        default=True, metadata={"help": "zero-init up-projections / LoRA B (identity at init); False = SimAda init"}
    )
    literal: bool = field(
        default=False,
        metadata={"help": "reproduce the SimAda files' non-identity series-MLP and parallel-attention formulas"},
    )

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not 0 < self.ratio <= 4:
            raise ValueError(f"ratio must be in (0, 4], got {self.ratio}")
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")


class ScaledSeriesWrap(nn.Module):
    """``y = base(x)``; returns ``y + 0.5·Ad(y)`` (mode "skip"), ``0.5·Ad(y)`` ("no_skip", literal series
    MLP) or ``y + 0.5·(y + Ad(y))`` ("double_skip", literal parallel attention). ``adapter`` is a
    skip-less :class:`Bottleneck` (``Ad``)."""

    def __init__(self, base: nn.Module, adapter: Bottleneck, mode: str = "skip") -> None:
        super().__init__()
        self.base_layer = base
        self.adapter = adapter
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if self.mode == "no_skip":
            return SCALE * self.adapter(y)
        if self.mode == "double_skip":
            return y + SCALE * (y + self.adapter(y))
        return y + SCALE * self.adapter(y)


class LoRAQV(nn.Module):
    """SimAda ``_LoRA_qkv``: ``qkv(x)`` plus ``B_q A_q x`` on the q columns and ``B_v A_v x`` on the v columns."""

    def __init__(self, base: nn.Linear, q_cols: torch.Tensor, v_cols: torch.Tensor, rank: int, zero_init: bool):
        super().__init__()
        self.base_layer = base
        self.a_q = nn.Linear(base.in_features, rank, bias=False)
        self.b_q = nn.Linear(rank, len(q_cols), bias=False)
        self.a_v = nn.Linear(base.in_features, rank, bias=False)
        self.b_v = nn.Linear(rank, len(v_cols), bias=False)
        if zero_init:
            nn.init.zeros_(self.b_q.weight)
            nn.init.zeros_(self.b_v.weight)
        self.register_buffer("q_cols", q_cols, persistent=False)
        self.register_buffer("v_cols", v_cols, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        delta = torch.zeros_like(out)
        delta = delta.index_add(-1, self.q_cols, self.b_q(self.a_q(x)))
        delta = delta.index_add(-1, self.v_cols, self.b_v(self.a_v(x)))
        return out + delta


def _check_block(backbone: Backbone, i: int, block: nn.Module) -> None:
    attn = getattr(block, "attn", None)
    ok = isinstance(getattr(attn, "qkv", None), nn.Linear) and hasattr(attn, "proj") and hasattr(block, "mlp")
    if not ok:
        raise ConfigError(
            f"susam: encoder block {i} of {backbone.name} ({type(block).__name__}) is unsupported: "
            "needs attn.qkv (nn.Linear), attn.proj and mlp"
        )


@PEFT_METHODS.register("susam")
class SUSAM(PeftMethod):
    """SU-SAM adapters in every encoder block, placed as ``variant`` says."""

    Options = SUSAMOptions

    def inject(self, backbone: Backbone) -> list[str]:
        o: SUSAMOptions = self.options
        names: list[str] = []
        for i, block in select_blocks(backbone, 0, None):
            _check_block(backbone, i, block)
            if o.variant == "lora":
                q, v = backbone.attention_layout(block).qv_columns()
                block.attn.qkv = LoRAQV(block.attn.qkv, q, v, o.rank, o.zero_init)
                names.append(f"encoder_blocks.{i}.attn.qkv")
                continue
            dim = block_width(block)
            branch = lambda: Bottleneck(dim, o.ratio, o.zero_init, skip=False)  # noqa: E731
            if o.variant == "parallel":
                mode = "double_skip" if o.literal else "skip"
                block.attn = ScaledSeriesWrap(block.attn, branch(), mode)
            else:  # series / mixed: skip adapter (Space_Adapter) after attention
                block.attn = SeriesWrap(block.attn, Bottleneck(dim, o.ratio, o.zero_init))
            if o.variant == "series":
                block.mlp = ScaledSeriesWrap(block.mlp, branch(), "no_skip" if o.literal else "skip")
            else:  # parallel / mixed: MLP_Adapter reads the MLP input
                block.mlp = ParallelWrap(block.mlp, branch(), SCALE)
            names += [f"encoder_blocks.{i}.attn", f"encoder_blocks.{i}.mlp"]
        if not names:
            raise ConfigError(f"susam: no encoder block matched in {backbone.name}")
        return names
