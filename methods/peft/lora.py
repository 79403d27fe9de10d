"""LoRA (Hu et al., ICLR 2022, https://arxiv.org/abs/2106.09685) on the attention ``qkv`` layers.

The paper (§4.2, §7.1) adapts the query/key/value projections with *separate* low-rank updates
``ΔW_q = B_q A_q``, ``ΔW_k = B_k A_k``, ``ΔW_v = B_v A_v`` (``form="heads"``, default here). SAM fuses
the three projections into one ``attn.qkv`` Linear; this form keeps three A/B pairs and writes each
update into its own slice of the fused output:

* SAM ViT (``segment_anything`` ``Attention``): output = ``[q (D) | k (D) | v (D)]``;
* TinyViT (``Attention``, LiteMedSAM/MobileSAM): output viewed as ``(num_heads, 2·key_dim + d)``,
  each head laid out ``[q (key_dim) | k (key_dim) | v (d)]``.

The public InfoSAM code (``image_encoder_lora.py`` → ``LoRALinear``, r=4, α=4, on every ``qkv``,
MuyaoYuan/InfoSAM ``ec8f9ab``) and Conv-LoRA's LoRA baseline (autogluon ``LoRALinear`` on the fused
``qkv`` matched by ``filter=["q", "v"]``) use *one* A/B pair on the whole fused layer
(``form="fused"``): a rank-r update shared by q, k and v, 2/3 of the parameters of ``heads``. SAMed
(hitachinsk/SAMed ``_LoRA_qkv``) has separate q and v pairs and none on k (that is SU-SAM's
``variant=lora`` here). The InfoSAM protocol should set ``peft.form=fused`` (r = 4, α = 4); the
default stays ``heads``, the paper's description.

``h = qkv(x) + (α/r)·ΔW x``. A: Kaiming-uniform (a=√5, as ``peft``), B: zeros → identity at init.
Trains the LoRA matrices and the mask decoder (InfoSAM ``--tuning_decoder``; the decoder parts no loss
reads stay frozen, :func:`bench.contracts.peft.unused_decoder_modules`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from bench.backbones import Backbone
from bench.config import ConfigError
from bench.contracts.peft import PEFT_METHODS, PeftMethod, select_blocks

FORMS = ("heads", "fused")


@dataclass
class LoraOptions:
    r: int = field(default=4, metadata={"help": "rank of each low-rank update (InfoSAM: 4)"})
    alpha: float = field(default=4.0, metadata={"help": "scale numerator; the update is scaled by alpha/r"})
    targets: str = field(default="qkv", metadata={"help": "adapted layer; only the fused attention qkv"})
    form: str = field(default="heads", metadata={"help": "heads = separate dW_q, dW_k, dW_v (paper); fused = one"})
    start_block: int = field(default=0, metadata={"help": "first adapted encoder block (InfoSAM: all)"})
    end_block: Optional[int] = field(default=None, metadata={"help": "exclusive; None = through the last block"})

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.targets != "qkv":
            raise ValueError(f"targets must be 'qkv', got {self.targets!r}")
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {list(FORMS)}, got {self.form!r}")
        if self.start_block < 0:
            raise ValueError(f"start_block must be >= 0, got {self.start_block}")


class LoraQKV(nn.Module):
    """Fused ``qkv`` Linear plus a scaled low-rank update; keeps the original as ``base_layer``.

    Args:
        base: The fused ``qkv`` Linear (in D, out Σ groups·(q+k+v)).
        r, alpha: Rank and scale numerator (scale = alpha / r).
        form: ``"heads"`` = one A/B pair per q, k, v; ``"fused"`` = one pair on the whole output.
        layout: ``(groups, (q, k, v))`` from :meth:`Backbone.attention_layout` (needed for ``"heads"``).
    """

    def __init__(
        self, base: nn.Linear, r: int, alpha: float, form: str, layout: tuple[int, tuple[int, int, int]]
    ) -> None:
        super().__init__()
        self.base_layer = base
        self.form = form
        self.scale = alpha / r
        self.groups, self.split = layout
        outs = [base.out_features] if form == "fused" else [self.groups * s for s in self.split]
        parts = ["qkv"] if form == "fused" else ["q", "k", "v"]
        self.lora_A = nn.ParameterDict({p: nn.Parameter(torch.empty(r, base.in_features)) for p in parts})
        self.lora_B = nn.ParameterDict({p: nn.Parameter(torch.zeros(o, r)) for p, o in zip(parts, outs)})
        for a in self.lora_A.values():
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The unscaled update ΔW x, laid out like the fused output (..., out)."""
        if self.form == "fused":
            return x @ self.lora_A["qkv"].t() @ self.lora_B["qkv"].t()
        lead = x.shape[:-1]
        parts = [
            (x @ self.lora_A[p].t() @ self.lora_B[p].t()).reshape(*lead, self.groups, s)
            for p, s in zip("qkv", self.split)
        ]
        return torch.cat(parts, dim=-1).reshape(*lead, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.scale * self.delta(x)

    def weight_delta(self) -> torch.Tensor:
        """ΔW (out, in), laid out like the fused ``qkv`` weight (see :meth:`delta`)."""
        if self.form == "fused":
            return self.lora_B["qkv"] @ self.lora_A["qkv"]
        parts = [(self.lora_B[p] @ self.lora_A[p]).reshape(self.groups, s, -1) for p, s in zip("qkv", self.split)]
        return torch.cat(parts, dim=1).reshape(self.base_layer.out_features, -1)

    def fold(self) -> nn.Linear:
        """The plain Linear ``W + (α/r)·B A`` (computed in float64, one rounding to the weight's dtype)."""
        base = copy.deepcopy(self.base_layer)
        delta = self.scale * self.weight_delta().double()
        base.weight.data = (base.weight.data.double() + delta).to(base.weight.dtype)
        return base


@PEFT_METHODS.register("lora", mergeable=True)
class Lora(PeftMethod):
    """LoRA on ``attn.qkv`` of blocks ``start_block..end``."""

    Options = LoraOptions

    def inject(self, backbone: Backbone) -> list[str]:
        o: LoraOptions = self.options
        names = []
        for i, block in select_blocks(backbone, o.start_block, o.end_block):
            attn = getattr(block, "attn", None)
            if attn is None or not isinstance(getattr(attn, "qkv", None), nn.Linear):
                continue
            layout = (1, (attn.qkv.out_features, 0, 0))  # the fused form needs no layout
            if o.form == "heads":
                heads = backbone.attention_layout(block)
                if not heads.groups:
                    raise ConfigError(
                        f"lora form='heads' on {backbone.name} block {i}: unknown fused qkv layout "
                        f"({type(attn).__name__}, qkv out {attn.qkv.out_features}); use form='fused'"
                    )
                layout = (heads.groups, (heads.q, heads.k, heads.v))
            attn.qkv = LoraQKV(attn.qkv, o.r, o.alpha, o.form, layout)
            names.append(f"encoder_blocks.{i}.attn.qkv")
        if not names:
            raise ConfigError(f"lora: no attn.qkv Linear in the selected encoder blocks of {backbone.name}")
        return names
