"""The encoder side of the backbone contract: the encoder as a flat list of :class:`EncoderStep` and the
one loop that runs them (:func:`run_steps`, used by every backbone's ``encode`` / ``encode_prefix``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from bench.contracts.decoder import DecoderExtension

INPUT_EMBEDDING = -100
"""Feature key of the *input* of encoder block 0 (the patch/input embedding), for a method that reads
it like a block output (LST's side network starts from it); cached with the frozen prefix like one."""


def _channels_last_to_map(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


@dataclass
class EncoderStep:
    """One step of the encoder: ``fn`` maps the previous state to the next; ``params`` are its weights.

    Attributes:
        name: Module path of the step, e.g. ``image_encoder.blocks.3``.
        fn: The step's forward.
        params: Parameters the step uses (decides whether it is frozen).
        block: Index into ``encoder_blocks()`` when the step is a transformer block.
        to_map: Turns the step's output into a (B, C, h, w) map (for block features).
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    params: list[nn.Parameter]
    block: Optional[int] = None
    to_map: Callable[[torch.Tensor], torch.Tensor] = _channels_last_to_map


def run_steps(
    steps: list[EncoderStep],
    state: Any,
    blocks: tuple[int, ...] = (),
    extension: Optional[DecoderExtension] = None,
) -> tuple[Any, dict[int, torch.Tensor]]:
    """Run ``steps`` in order on ``state``; collect the requested block outputs as (B, C_l, h_l, w_l) maps
    (``INPUT_EMBEDDING``: the input of block 0) and let ``extension`` record the blocks it reads.

    Returns:
        The state after the last step and the requested block maps.
    """
    feats: dict[int, torch.Tensor] = {}
    for step in steps:
        if step.block == 0 and INPUT_EMBEDDING in blocks:
            feats[INPUT_EMBEDDING] = step.to_map(state)
        if step.block == 0 and extension is not None and INPUT_EMBEDDING in extension.blocks:
            extension.record(
                INPUT_EMBEDDING, feats[INPUT_EMBEDDING] if INPUT_EMBEDDING in feats else step.to_map(state)
            )
        state = step.fn(state)
        if step.block is not None and step.block in blocks:
            feats[step.block] = step.to_map(state)
        if extension is not None and step.block is not None and step.block in extension.blocks:
            extension.record(step.block, feats[step.block] if step.block in feats else step.to_map(state))
    return state, feats


@dataclass(frozen=True)
class AttentionLayout:
    """How an encoder block's attention is laid out, so PEFT methods need not inspect module types.

    Attributes:
        kind: ``"vit"`` (segment_anything ``Attention``), ``"tinyvit"`` (TinyViT ``Attention``), ``"hiera"``
            (SAM2 ``MultiScaleAttention``) or ``""`` (unknown).
        heads: Number of attention heads (0 when unknown).
        groups: The fused ``qkv`` output is ``groups`` chunks of ``[q | k | v]`` channels (0: not known).
        q: Query channels per group.
        k: Key channels per group.
        v: Value channels per group.
        fused_out: Output width of the fused ``qkv`` Linear (0 when the block has none).
    """

    kind: str = ""
    heads: int = 0
    groups: int = 0
    q: int = 0
    k: int = 0
    v: int = 0
    fused_out: int = 0

    def qv_columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Output columns of the fused ``qkv`` that hold q and those that hold v."""
        per = self.q + self.k + self.v
        q = torch.cat([torch.arange(g * per, g * per + self.q) for g in range(self.groups)])
        v = torch.cat([torch.arange(g * per + self.q + self.k, (g + 1) * per) for g in range(self.groups)])
        return q, v


def attention_layout_of(block: nn.Module) -> AttentionLayout:
    """The :class:`AttentionLayout` of ``block.attn``, read once from the official module's attributes."""
    attn = getattr(block, "attn", None)
    qkv = getattr(attn, "qkv", None)
    out = int(qkv.out_features) if isinstance(qkv, nn.Linear) else 0
    if attn is None:
        return AttentionLayout()
    heads = int(getattr(attn, "num_heads", 0) or 0)
    if all(hasattr(attn, a) for a in ("key_dim", "d", "num_heads")):  # TinyViT: per head [q, k, v]
        kd, d = int(attn.key_dim), int(attn.d)
        if heads * (2 * kd + d) == out:
            return AttentionLayout("tinyvit", heads, heads, kd, kd, d, out)
        return AttentionLayout("tinyvit", heads, fused_out=out)
    if all(hasattr(attn, a) for a in ("q_pool", "num_heads", "dim_out")):
        kind = "hiera"
    elif all(hasattr(attn, a) for a in ("num_heads", "scale", "use_rel_pos")):
        kind = "vit"
    else:
        kind = ""
    proj = getattr(attn, "proj", None)
    if out and isinstance(proj, nn.Linear) and out == 3 * proj.in_features:  # [q | k | v]
        dim = out // 3
        return AttentionLayout(kind, heads, 1, dim, dim, dim, out)
    return AttentionLayout(kind, heads, fused_out=out)
