"""SAM-Adapter (Chen et al. 2023, "SAM Fails to Segment Anything? – SAM-Adapter"), simplified.

What the original does (from memory of the paper and ``tianrun-chen/SAM-Adapter-PyTorch``, whose
prompt generator comes from EVP, "Explicit Visual Prompting", Liu et al. 2023; NOT re-checked here,
the reference notes in /work/shared have nothing on it beyond a parameter count in the Conv-LoRA
table):

* a task feature ``F_i`` is built once per image from (a) the patch embedding (``embedding_generator``:
  Linear D → D/32 on the patch tokens) and (b) the image's high-frequency component (FFT high-pass,
  ``freq_nums`` 0.25, then a patch-embedding convolution 3 → D/32);
* for every block i a lightweight MLP ``Linear(D/32, D/32) + GELU`` (per block) and a shared
  ``Linear(D/32, D)`` (``shared_mlp``) turn ``F_emb + F_hfc`` into a prompt added to the block input:
  ``x_i ← x_i + shared_up(MLP_i(F))``;
* the encoder is frozen except these adapters; the decoder is trained.

What is kept here: the scale factor 32, a shared down projection D → D/32, per-block
``Linear(D/32, D/32) + GELU`` MLPs, a shared zero-initialised up projection D/32 → D, and the
addition to each block's input, i.e. ``x_i ← x_i + up(MLP_i(down(x_i)))``.

What is left out, and why:

* the high-frequency image component: blocks here never see the image — the encoder cache stores the
  patch-embedding output and the PEFT contract only wraps encoder modules — so an FFT branch would
  need a new trainer hook;
* the single task feature shared by all blocks: here each block's prompt is computed from that block's
  own input (as the brief for this benchmark specifies) rather than from the patch embedding. For
  block 0 the two coincide (up to SAM's absolute position embedding, which the original adds after
  computing the prompt);
* zero-initialising the shared up projection (the original uses a truncated-normal init) keeps the
  wrapped model identical to the pretrained one at step 0.

On TinyViT (LiteMedSAM) and SAM2 Hiera the stage widths differ (128/160/320; 96/192/384/768), so one
shared down/up pair is kept per width; the width is the block's *input* width (``attn.qkv`` input),
which in the first block of a Hiera stage is the previous stage's (the block widens to ``dim_out``).
The shared pairs live in ``image_encoder.sam_adapter_shared`` (one registration each, so
every parameter has exactly one name); each wrapped block holds a plain reference to its pair.
The wrapper keeps the block as ``base_layer`` and forwards unknown attribute look-ups (``attn``,
``mlp``, ``input_resolution`` …) to it, so code that inspects blocks still works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from bench.backbones import Backbone
from bench.config import ConfigError

from ._base import PEFT_METHODS, PeftMethod, select_blocks


@dataclass
class SAMAdapterOptions:
    scale_factor: int = field(default=32, metadata={"help": "prompt width is D // scale_factor (SAM-Adapter: 32)"})
    start_block: int = field(default=0, metadata={"help": "first prompted encoder block (SAM-Adapter: all)"})
    end_block: Optional[int] = field(default=None, metadata={"help": "exclusive; None = through the last block"})

    def __post_init__(self) -> None:
        if self.scale_factor < 1:
            raise ValueError(f"scale_factor must be >= 1, got {self.scale_factor}")
        if self.start_block < 0:
            raise ValueError(f"start_block must be >= 0, got {self.start_block}")


class SharedProjections(nn.Module):
    """Shared D → D/s down projection and zero-initialised D/s → D up projection."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)


class PromptedBlock(nn.Module):
    """``block(x + up(GELU(W_i down(x)) ))`` with per-block ``W_i`` and shared ``down``/``up``."""

    def __init__(self, base: nn.Module, shared: SharedProjections) -> None:
        super().__init__()
        self.base_layer = base
        hidden = shared.down.out_features
        self.prompt_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU())
        object.__setattr__(self, "shared", shared)  # a reference, not a second registration

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prompt = self.shared.up(self.prompt_mlp(self.shared.down(x)))  # per token: (B,H,W,C) or (B,L,C)
        return self.base_layer(x + prompt)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__["_modules"].get("base_layer")
            if base is None:
                raise
            return getattr(base, name)


def _parents(root: nn.Module) -> dict[int, tuple[nn.Module, str]]:
    return {id(child): (parent, name) for parent in root.modules() for name, child in parent.named_children()}


@PEFT_METHODS.register("sam_adapter")
class SAMAdapter(PeftMethod):
    """Per-block prompt MLPs added to the inputs of encoder blocks ``start_block..end``."""

    Options = SAMAdapterOptions

    def inject(self, backbone: Backbone) -> list[str]:
        o: SAMAdapterOptions = self.options
        encoder = backbone.image_encoder
        parents = _parents(encoder)
        shared = nn.ModuleDict()
        encoder.sam_adapter_shared = shared
        names = []
        for i, block in select_blocks(backbone, o.start_block, o.end_block):
            proj = getattr(getattr(block, "attn", None), "proj", None)
            if not isinstance(proj, nn.Linear) or id(block) not in parents:
                raise ConfigError(
                    f"sam_adapter: encoder block {i} of {backbone.name} ({type(block).__name__}) is unsupported: "
                    "needs attn.proj (nn.Linear) to know its width and must be a child of the image encoder"
                )
            qkv = getattr(block.attn, "qkv", None)
            dim = qkv.in_features if isinstance(qkv, nn.Linear) else proj.out_features  # the block input width
            key = str(dim)
            if key not in shared:
                shared[key] = SharedProjections(dim, max(1, dim // o.scale_factor))
            parent, child_name = parents[id(block)]
            setattr(parent, child_name, PromptedBlock(block, shared[key]))
            names.append(f"encoder_blocks.{i}")
        if not names:
            raise ConfigError(f"sam_adapter: no encoder block matched in {backbone.name}")
        shared.requires_grad_(True)
        return names
