"""SAM-Adapter (Chen et al. 2023, "SAM Fails to Segment Anything? – SAM-Adapter", arXiv 2304.09148).

Follows ``tianrun-chen/SAM-Adapter-PyTorch`` (``models/mmseg/models/sam/image_encoder.py``:
``ImageEncoderViT.forward``, ``PromptGenerator``, ``PatchEmbed2``; the prompt generator comes from
EVP, Liu et al. 2023). With D the encoder width, c = D / 32 (``scale_factor``) and x the (normalised,
padded) input image:

* one task feature per image, shared by all blocks::

      F = embedding_generator(patch_embed(x)) + hfc_embed(HFC(x))       # (B, h, w, c)

  ``embedding_generator`` = Linear(D → c) on the patch tokens (before the position embedding);
  ``hfc_embed`` = Conv2d(3 → c, kernel = stride = patch size) on the high-frequency component
  ``HFC(x) = |Re ifft2(ifftshift(fftshift(fft2(x)) · (1 − M)))|`` (``fft(..., norm="forward")``
  both ways), M = 1 on the centred square of side 2·⌊√(H·W·rate) / 2⌋, rate = ``freq_nums`` = 0.25;
* per block i a ``lightweight_mlp_i`` = Linear(c → c) + GELU and one shared ``shared_mlp`` =
  Linear(c → D) give the prompt added to the block input: ``x_i ← x_i + shared_mlp(MLP_i(F))``;
* everything else in the encoder is frozen; the mask decoder trains (as every Conv-LoRA baseline).

Init: the public code uses a truncated normal (std 0.02, bias 0) for every Linear and N(0, √(2 /
fan_out)) for the convolution (``_init_weights``); ``zero_init=false`` reproduces it. The default
``zero_init=true`` keeps that init but zeroes ``shared_mlp``, so the wrapped model equals the
pretrained one at step 0 (``identity_at_init``).

Where the modules live: the task feature is a wrapper around the encoder's ``patch_embed`` (it keeps
it as ``base_layer``, returns its output unchanged and keeps F for the blocks of this forward), so
the image is seen without a trainer hook; its parameters make the patch-embedding step trainable,
so the encoder cache serves nothing for this method (the prompt of block 0 needs the image). Each
prompted block wraps the original as ``base_layer`` and forwards unknown attribute look-ups
(``attn``, ``mlp``, ``input_resolution`` …) to it.

Deviations (hierarchical encoders only; on SAM ViT the method is the public one):

* TinyViT (LiteMedSAM/MobileSAM) and SAM2 Hiera change width and grid between stages: c is the
  widest block input // ``scale_factor``, F (at the patch-embedding grid, stride 4) is average-pooled
  to each block's input grid, and one ``shared_mlp`` is kept per block input width
  (``image_encoder.sam_adapter_shared``, keyed by that width). ``hfc_embed`` uses the patch
  embedding's total stride as kernel and stride.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from bench.backbones import Backbone
from bench.config import ConfigError
from bench.contracts.peft import PEFT_METHODS, PeftMethod, select_blocks


@dataclass
class SAMAdapterOptions:
    scale_factor: int = field(default=32, metadata={"help": "task feature width c = D // scale_factor (32)"})
    freq_nums: float = field(
        default=0.25, metadata={"help": "high-pass: area fraction of the centred spectrum removed (0.25)"}
    )
    zero_init: bool = field(
        default=True, metadata={"help": "zero the shared up-projection (identity at init); False = public init"}
    )
    start_block: int = field(default=0, metadata={"help": "first prompted encoder block (SAM-Adapter: all)"})
    end_block: Optional[int] = field(default=None, metadata={"help": "exclusive; None = through the last block"})

    def __post_init__(self) -> None:
        if self.scale_factor < 1:
            raise ValueError(f"scale_factor must be >= 1, got {self.scale_factor}")
        if not 0 <= self.freq_nums < 1:
            raise ValueError(f"freq_nums must be in [0, 1), got {self.freq_nums}")
        if self.start_block < 0:
            raise ValueError(f"start_block must be >= 0, got {self.start_block}")


def high_frequency(x: torch.Tensor, rate: float) -> torch.Tensor:
    """|Re ifft2(high-passed spectrum)| of (B, C, H, W) images: the centred low-frequency square of
    side 2·⌊√(H·W·rate) / 2⌋ is removed (``PromptGenerator.fft``)."""
    h, w = x.shape[-2:]
    half = int(math.sqrt(h * w * rate) // 2)
    keep = torch.ones(h, w, device=x.device)
    keep[h // 2 - half : h // 2 + half, w // 2 - half : w // 2 + half] = 0
    spectrum = torch.fft.fftshift(torch.fft.fft2(x.float(), norm="forward"), dim=(-2, -1)) * keep
    inv = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1)), norm="forward").real
    return inv.abs().to(x.dtype)


def _public_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            nn.init.zeros_(m.bias)


class _WrapsBase(nn.Module):
    """A wrapper that keeps the original module as ``base_layer`` and forwards attribute look-ups it does not
    have to it (code reading ``block.attn`` or ``patch_embed.proj`` keeps working)."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__["_modules"].get("base_layer")
            if base is None:
                raise
            return getattr(base, name)


class TaskFeature(_WrapsBase):
    """Wraps ``patch_embed``: returns its output unchanged and keeps F (B, h, w, c) for the blocks.

    Args:
        base: The encoder's patch embedding.
        width: Its output channels D_0.
        stride: Its total stride (kernel and stride of ``hfc_embed``).
        hidden: Task feature width c.
        rate: ``freq_nums`` of the high-pass.
        channels_first: The patch embedding returns (B, C, h, w) (TinyViT) instead of (B, h, w, C).
    """

    def __init__(
        self, base: nn.Module, width: int, stride: int, hidden: int, rate: float, channels_first: bool
    ) -> None:
        super().__init__()
        self.base_layer = base
        self.rate = rate
        self.channels_first = channels_first
        self.embedding_generator = nn.Linear(width, hidden)
        self.hfc_embed = nn.Conv2d(3, hidden, kernel_size=stride, stride=stride)
        _public_init(self.embedding_generator)
        _public_init(self.hfc_embed)
        self.feature: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        tokens = out.permute(0, 2, 3, 1) if self.channels_first else out  # (B, h, w, D_0)
        hfc = self.hfc_embed(high_frequency(x, self.rate))  # (B, c, h', w')
        if hfc.shape[-2:] != tokens.shape[1:3]:
            hfc = F.interpolate(hfc, size=tokens.shape[1:3], mode="bilinear", align_corners=False)
        self.feature = self.embedding_generator(tokens) + hfc.permute(0, 2, 3, 1)
        return out


class PromptedBlock(_WrapsBase):
    """``block(x + shared_mlp(GELU(W_i F)))``, F resampled to the block's input grid."""

    def __init__(self, base: nn.Module, task: TaskFeature, shared_mlp: nn.Linear, last: bool) -> None:
        super().__init__()
        self.base_layer = base
        hidden = shared_mlp.in_features
        self.lightweight_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU())
        object.__setattr__(self, "task", task)  # references, not second registrations
        object.__setattr__(self, "shared_mlp", shared_mlp)
        self.last = last

    def _grid(self, x: torch.Tensor) -> tuple[int, int]:
        if x.dim() == 4:  # SAM ViT / Hiera: (B, H, W, C)
            return int(x.shape[1]), int(x.shape[2])
        res = getattr(self.base_layer, "input_resolution", None)  # TinyViT: (B, H·W, C)
        if res is None:
            side = math.isqrt(x.shape[1])
            res = (side, side)
        return int(res[0]), int(res[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.task.feature
        if feature is None:
            raise RuntimeError("sam_adapter: the task feature is missing (the patch embedding did not run first)")
        if self.last:
            self.task.feature = None  # do not keep the graph after the forward
        h, w = self._grid(x)
        if feature.shape[1:3] != (h, w):
            fmap = feature.permute(0, 3, 1, 2)
            if h <= fmap.shape[-2] and w <= fmap.shape[-1]:
                fmap = F.adaptive_avg_pool2d(fmap, (h, w))
            else:
                fmap = F.interpolate(fmap, size=(h, w), mode="bilinear", align_corners=False)
            feature = fmap.permute(0, 2, 3, 1)
        prompt = self.shared_mlp(self.lightweight_mlp(feature))  # (B, h, w, C)
        return self.base_layer(x + prompt.reshape(x.shape))


def _parents(root: nn.Module) -> dict[int, tuple[nn.Module, str]]:
    return {id(child): (parent, name) for parent in root.modules() for name, child in parent.named_children()}


def _block_input_width(i: int, block: nn.Module, backbone: Backbone) -> int:
    proj = getattr(getattr(block, "attn", None), "proj", None)
    if not isinstance(proj, nn.Linear):
        raise ConfigError(
            f"sam_adapter: encoder block {i} of {backbone.name} ({type(block).__name__}) is unsupported: "
            "needs attn.proj (nn.Linear) to know its width"
        )
    qkv = getattr(block.attn, "qkv", None)
    return qkv.in_features if isinstance(qkv, nn.Linear) else proj.out_features


@PEFT_METHODS.register("sam_adapter")
class SAMAdapter(PeftMethod):
    """Shared task feature (patch embedding + high-frequency component) → per-block prompt MLPs →
    shared up-projection, added to the inputs of encoder blocks ``start_block..end``."""

    Options = SAMAdapterOptions

    def inject(self, backbone: Backbone) -> list[str]:
        o: SAMAdapterOptions = self.options
        encoder, patch_embed = backbone.patch_embedding()  # SAM2: the trunk holds the patch embedding
        convs = [m for m in patch_embed.modules() if isinstance(m, nn.Conv2d)] if patch_embed is not None else []
        if not convs:
            raise ConfigError(f"sam_adapter: {backbone.name} has no convolutional patch_embed")
        stride = math.prod(int(c.stride[0]) for c in convs)
        chosen = select_blocks(backbone, o.start_block, o.end_block)
        widths = [_block_input_width(i, block, backbone) for i, block in chosen]
        hidden = max(1, max(widths) // o.scale_factor)
        task = TaskFeature(
            patch_embed, convs[-1].out_channels, stride, hidden, o.freq_nums, backbone.family == "tinyvit"
        )
        encoder.patch_embed = task
        shared = nn.ModuleDict()
        backbone.image_encoder.sam_adapter_shared = shared
        parents = _parents(backbone.image_encoder)
        names = []
        for n, ((i, block), dim) in enumerate(zip(chosen, widths)):
            if id(block) not in parents:
                raise ConfigError(f"sam_adapter: encoder block {i} of {backbone.name} is not an encoder submodule")
            key = str(dim)
            if key not in shared:
                shared[key] = nn.Linear(hidden, dim)
                if o.zero_init:
                    nn.init.zeros_(shared[key].weight)
                    nn.init.zeros_(shared[key].bias)
                else:
                    _public_init(shared[key])
            wrapped = PromptedBlock(block, task, shared[key], last=n == len(chosen) - 1)
            _public_init(wrapped.lightweight_mlp)
            parent, child_name = parents[id(block)]
            setattr(parent, child_name, wrapped)
            names.append(f"encoder_blocks.{i}")
        for module in (
            task.embedding_generator,
            task.hfc_embed,
            shared,
            *(b.lightweight_mlp for b in self._blocks(backbone)),
        ):
            module.requires_grad_(True)
        return names

    @staticmethod
    def _blocks(backbone: Backbone) -> list[PromptedBlock]:
        return [m for m in backbone.image_encoder.modules() if isinstance(m, PromptedBlock)]
