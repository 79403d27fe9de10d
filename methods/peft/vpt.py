"""VPT-Deep — Visual Prompt Tuning (Jia et al., ECCV 2022, https://arxiv.org/abs/2203.12119).

VPT-Deep prepends ``num_tokens`` learnable tokens ``P_i`` to the input of every block ``i`` and
drops the block's outputs at those positions (the next block gets fresh prompts ``P_{i+1}``).
Image tokens therefore see ``P_i`` only as extra *keys and values* of block ``i``'s attention::

    k_p = W_k · LN(P_i) + b_k,    v_p = W_v · LN(P_i) + b_v

with the block's own frozen LayerNorm and ``qkv`` weights, and everything else in the block is
per-token. This module implements exactly that by wrapping ``block.attn``: the wrapper re-runs the
official attention with ``num_tokens`` extra keys/values (prefix-style), which is VPT-Deep without
materialising the prompt tokens. Adaptation to the SAM-family encoders (documented choices):

* SAM ViT blocks work on (B, H, W, C) maps and most blocks attend within windows; every window
  attends to the same block prompts (as VPT does for Swin, where prompts are shared by all
  windows). Global-attention blocks are exactly VPT-Deep.
* SAM's decomposed relative-position bias and TinyViT's ``attention_biases`` exist only between
  image tokens; prompt keys get no positional bias (they have no position).
* TinyViT attention applies its own LayerNorm (``attn.norm``) to the prompts; SAM and Hiera blocks
  apply ``norm1`` (reached through the block, not re-registered).
* SAM2 Hiera blocks (``MultiScaleAttention``, channels-last windows of ``norm1(x)``): the prompts
  have the block's input width ``dim`` and become keys/values through the block's ``qkv``
  (``dim → dim_out``); in the first block of a stage only the image queries are max-pooled (as in
  the official forward), prompt keys/values are not. Attention is ``scaled_dot_product_attention``
  with its default 1/√d scale, as the official block.

Defaults: ``num_tokens=10`` (VPT tunes it per task from {1, 5, 10, 50, 100, 200}; 10 is the common
choice in VPT baselines for dense prediction — not checked against InfoSAM/Conv-LoRA's baseline
scripts, which are not public). Init as the VPT code: uniform(±√(6 / (3·p² + C))) with the patch
size p (16 when the encoder has no single patch convolution). Prompt dropout (0.1 in VPT) is not
used (SAM has no dropout). Prompts are non-zero at init, so the model is **not** identical to the
pretrained one before training (``identity_at_init = False``): prompts always take part of the
attention mass. Trains the prompts and the mask decoder (VPT trains prompts + task head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import add_decomposed_rel_pos
from torch import nn

from bench.backbones import Backbone
from bench.config import ConfigError
from bench.contracts.encoder import AttentionLayout
from bench.contracts.peft import PEFT_METHODS, PeftMethod, select_blocks


@dataclass
class VPTOptions:
    num_tokens: int = field(default=10, metadata={"help": "prompt tokens per block (VPT: 1..200, per task)"})
    start_block: int = field(default=0, metadata={"help": "first prompted encoder block (VPT-Deep: all)"})
    end_block: Optional[int] = field(default=None, metadata={"help": "exclusive; None = through the last block"})
    init_range: Optional[float] = field(
        default=None, metadata={"help": "uniform init half-width; None = VPT's sqrt(6/(3 p^2 + C))"}
    )

    def __post_init__(self) -> None:
        if self.num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {self.num_tokens}")
        if self.start_block < 0:
            raise ValueError(f"start_block must be >= 0, got {self.start_block}")
        if self.init_range is not None and self.init_range < 0:
            raise ValueError(f"init_range must be >= 0, got {self.init_range}")


def _attend(logits: torch.Tensor, q: torch.Tensor, v: torch.Tensor, kp: torch.Tensor, vp: torch.Tensor) -> torch.Tensor:
    """softmax([logits, q kpᵀ]) @ [v; vp].

    Args:
        logits: (..., N, N) image-token attention logits (scaled, positional bias included).
        q: (..., N, dq) scaled queries; v: (..., N, dv); kp: (..., n, dq); vp: (..., n, dv).
    """
    logits = torch.cat([logits, q @ kp.transpose(-2, -1)], dim=-1)
    return logits.softmax(dim=-1) @ torch.cat([v, vp], dim=-2)


class PromptedSamAttention(nn.Module):
    """SAM ViT ``Attention`` with ``n`` prompt keys/values; input (B, H, W, C) windows of ``norm1(x)``."""

    def __init__(self, base: nn.Module, norm: nn.Module, num_tokens: int, init_range: float) -> None:
        super().__init__()
        self.base_layer = base
        self._norm = (norm,)  # the block's norm1, not registered twice
        dim = base.qkv.in_features
        self.prompts = nn.Parameter(torch.empty(num_tokens, dim).uniform_(-init_range, init_range))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.base_layer
        b, h, w, _ = x.shape
        qkv = a.qkv(x).reshape(b, h * w, 3, a.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * a.num_heads, h * w, -1).unbind(0)
        n = self.prompts.shape[0]
        pkv = a.qkv(self._norm[0](self.prompts)).reshape(n, 3, a.num_heads, q.shape[-1]).permute(1, 2, 0, 3)
        kp, vp = (t.unsqueeze(0).expand(b, -1, -1, -1).reshape(b * a.num_heads, n, q.shape[-1]) for t in pkv[1:])
        logits = (q * a.scale) @ k.transpose(-2, -1)
        if a.use_rel_pos:  # as the official forward: the positional term uses the unscaled q
            logits = add_decomposed_rel_pos(logits, q, a.rel_pos_h, a.rel_pos_w, (h, w), (h, w))
        out = _attend(logits, q * a.scale, v, kp, vp)
        out = out.view(b, a.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return a.proj(out)


class PromptedTinyViTAttention(nn.Module):
    """TinyViT ``Attention`` (own LayerNorm, per-head [q, k, v] layout) with ``n`` prompt keys/values."""

    def __init__(self, base: nn.Module, num_tokens: int, init_range: float) -> None:
        super().__init__()
        self.base_layer = base
        dim = base.qkv.in_features
        self.prompts = nn.Parameter(torch.empty(num_tokens, dim).uniform_(-init_range, init_range))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, N, C)
        a = self.base_layer
        b, n_tok, _ = x.shape
        split = [a.key_dim, a.key_dim, a.d]
        q, k, v = (t.permute(0, 2, 1, 3) for t in a.qkv(a.norm(x)).view(b, n_tok, a.num_heads, -1).split(split, 3))
        n = self.prompts.shape[0]
        _, kp, vp = (
            t.permute(1, 0, 2) for t in a.qkv(a.norm(self.prompts)).view(n, a.num_heads, sum(split)).split(split, 2)
        )
        q = q * a.scale
        logits = q @ k.transpose(-2, -1) + a.attention_biases[:, a.attention_bias_idxs]  # == a.ab in eval mode
        out = _attend(logits, q, v, kp.expand(b, -1, -1, -1), vp.expand(b, -1, -1, -1))
        return a.proj(out.transpose(1, 2).reshape(b, n_tok, a.dh))


class PromptedHieraAttention(nn.Module):
    """SAM2 Hiera ``MultiScaleAttention`` (query pooling, fused [q | k | v]) with ``n`` prompt keys/values."""

    def __init__(self, base: nn.Module, norm: nn.Module, num_tokens: int, init_range: float) -> None:
        super().__init__()
        self.base_layer = base
        self._norm = (norm,)  # the block's norm1, not registered twice
        self.prompts = nn.Parameter(torch.empty(num_tokens, base.qkv.in_features).uniform_(-init_range, init_range))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, H, W, dim)
        a = self.base_layer
        b, h, w, _ = x.shape
        q, k, v = torch.unbind(a.qkv(x).reshape(b, h * w, 3, a.num_heads, -1), 2)
        if a.q_pool is not None:  # stage change: pooled queries, as the official forward
            q = a.q_pool(q.reshape(b, h, w, -1).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, a.num_heads, -1)
        n = self.prompts.shape[0]
        _, kp, vp = torch.unbind(a.qkv(self._norm[0](self.prompts)).reshape(n, 3, a.num_heads, -1), 1)
        k = torch.cat([k, kp.unsqueeze(0).expand(b, -1, -1, -1)], dim=1)
        v = torch.cat([v, vp.unsqueeze(0).expand(b, -1, -1, -1)], dim=1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return a.proj(out.transpose(1, 2).reshape(b, h, w, -1))


def _patch_size(backbone: Backbone) -> int:
    proj = getattr(getattr(backbone.image_encoder, "patch_embed", None), "proj", None)
    return int(proj.kernel_size[0]) if isinstance(proj, nn.Conv2d) else 16


def wrap_attention(
    block: nn.Module, layout: AttentionLayout, num_tokens: int, init_range: float
) -> Optional[nn.Module]:
    """The prompted wrapper for ``block.attn`` (of the given layout), or None for an unknown attention type."""
    attn = block.attn
    if layout.kind == "tinyvit" and all(hasattr(attn, a) for a in ("attention_biases", "norm")):
        return PromptedTinyViTAttention(attn, num_tokens, init_range)
    if layout.kind == "hiera" and isinstance(getattr(block, "norm1", None), nn.LayerNorm):
        return PromptedHieraAttention(attn, block.norm1, num_tokens, init_range)
    if layout.kind == "vit" and isinstance(getattr(block, "norm1", None), nn.LayerNorm):
        return PromptedSamAttention(attn, block.norm1, num_tokens, init_range)
    return None


@PEFT_METHODS.register("vpt")
class VPT(PeftMethod):
    """VPT-Deep prompts (as extra attention keys/values) in blocks ``start_block..end``."""

    Options = VPTOptions
    identity_at_init = False  # VPT prompts are random and always attended to

    def inject(self, backbone: Backbone) -> list[str]:
        o: VPTOptions = self.options
        names = []
        for i, block in select_blocks(backbone, o.start_block, o.end_block):
            dim = block.attn.qkv.in_features
            init = o.init_range if o.init_range is not None else math.sqrt(6.0 / (3 * _patch_size(backbone) ** 2 + dim))
            wrapped = wrap_attention(block, backbone.attention_layout(block), o.num_tokens, init)
            if wrapped is None:
                raise ConfigError(
                    f"vpt: block {i} of {backbone.name} has an unsupported attention ({type(block.attn).__name__}); "
                    "supported: segment_anything Attention, TinyViT Attention, SAM2 MultiScaleAttention"
                )
            block.attn = wrapped
            names.append(f"encoder_blocks.{i}.attn")
        return names
