"""SSF — Scaling & Shifting your Features (Lian et al., NeurIPS 2022, https://arxiv.org/abs/2210.08823).

After every operation ``y = op(x)`` of a block, a learnable per-channel affine map
``y' = γ ⊙ y + β`` (channel = last dimension; SAM blocks are channels-last (B, H, W, C), TinyViT
blocks use tokens (B, N, C)). As in the SSF ViT code (``ssf_ada`` after ``norm1``, ``qkv``,
``proj``, ``norm2``, ``fc1``, ``fc2``), the operations are every Linear and LayerNorm inside each
encoder block: SAM ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.lin1``, ``mlp.lin2``;
TinyViT ``attn.norm``, ``attn.qkv``, ``attn.proj``, ``mlp.norm``, ``mlp.fc1``, ``mlp.fc2``
(its depth-wise ``local_conv`` is left alone). The SSF paper also scales the patch embedding and the
final norm; those are outside the blocks and not adapted here. On the fused ``qkv`` the map is
per output channel, i.e. per q/k/v channel, whatever the layout.

Init: the SSF code draws ``γ ~ N(1, 0.02)``, ``β ~ N(0, 0.02)`` (not identity); the default here
is ``init_std=0`` (γ = 1, β = 0 → identity at init); ``init_std=0.02`` reproduces the original.
The γ/β can be merged into the preceding layer after training (re-parameterisation). Trains γ, β
and the mask decoder (SSF trains the classification head).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from bench.backbones import Backbone
from bench.config import ConfigError
from bench.contracts.peft import PEFT_METHODS, Foldable, PeftMethod, select_blocks


@dataclass
class SSFOptions:
    init_std: float = field(default=0.0, metadata={"help": "std of γ around 1 and β around 0 (SSF code: 0.02)"})
    start_block: int = field(default=0, metadata={"help": "first adapted encoder block (SSF: all)"})
    end_block: Optional[int] = field(default=None, metadata={"help": "exclusive; None = through the last block"})

    def __post_init__(self) -> None:
        if self.init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {self.init_std}")
        if self.start_block < 0:
            raise ValueError(f"start_block must be >= 0, got {self.start_block}")


class ScaleShift(nn.Module):
    """``base(x) * scale + shift`` over the last (channel) dimension; keeps ``base_layer``."""

    def __init__(self, base: nn.Module, channels: int, init_std: float) -> None:
        super().__init__()
        self.base_layer = base
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))
        if init_std > 0:
            nn.init.normal_(self.scale, mean=1.0, std=init_std)
            nn.init.normal_(self.shift, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) * self.scale + self.shift

    def fold(self) -> nn.Module:
        """The base layer (itself folded first if it is a wrapper) with γ and β folded into its weight and bias."""
        base = self.base_layer.fold() if isinstance(self.base_layer, Foldable) else copy.deepcopy(self.base_layer)
        if getattr(base, "bias", None) is None or getattr(base, "weight", None) is None:
            raise ConfigError(f"ssf: cannot fold into {type(base).__name__} without weight and bias")
        scale = self.scale.data
        base.weight.data = base.weight.data * (scale[:, None] if base.weight.dim() == 2 else scale)
        base.bias.data = base.bias.data * scale + self.shift.data
        return base


def _channels(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.normalized_shape[-1]


@PEFT_METHODS.register("ssf", mergeable=True)
class SSF(PeftMethod):
    """Per-channel scale and shift after every Linear and LayerNorm of the encoder blocks."""

    Options = SSFOptions

    def inject(self, backbone: Backbone) -> list[str]:
        o: SSFOptions = self.options
        names = []
        for i, block in select_blocks(backbone, o.start_block, o.end_block):
            targets = [(n, m) for n, m in block.named_modules() if isinstance(m, (nn.Linear, nn.LayerNorm)) and n]
            for name, module in targets:
                parent_name, _, child = name.rpartition(".")
                parent = block.get_submodule(parent_name) if parent_name else block
                setattr(parent, child, ScaleShift(module, _channels(module), o.init_std))
                names.append(f"encoder_blocks.{i}.{name}")
        if not names:
            raise ConfigError(f"ssf: no Linear or LayerNorm in the selected encoder blocks of {backbone.name}")
        return names
