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
