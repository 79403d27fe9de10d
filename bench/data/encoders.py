"""Encoder front-ends that reuse cached frozen states: the student's frozen prefix, the whole teacher."""

from __future__ import annotations

import logging
from typing import Optional

import torch

from bench.backbones import Backbone
from bench.contracts.encoder import INPUT_EMBEDDING
from bench.data.cache import EncoderCache

log = logging.getLogger(__name__)


class CachedEncoder:
    """``backbone.encode`` that starts from the cached output of the longest frozen prefix.

    Requested block outputs inside the frozen prefix are cached with it (a frozen teacher's
    intermediate features cost one pass over the data); later ones are computed every step.

    Args:
        backbone: The model (its PEFT modules already injected).
        cache_root: ``data.cache_dir``; None disables caching.
        blocks: Block indices whose outputs are requested.
        dtype: Cache dtype, ``"fp16"`` or ``"fp32"`` (``data.cache_dtype``).
        compute: How the states are computed (:func:`bench.hardware.accel.compute_tag`), part of the cache key.
    """

    def __init__(
        self,
        backbone: Backbone,
        cache_root: Optional[str],
        blocks: tuple[int, ...] = (),
        dtype: str = "fp16",
        compute: str = "cpu-fp32",
    ) -> None:
        self.backbone = backbone
        self.blocks = tuple(sorted(set(blocks)))
        steps = backbone.encoder_steps()
        n_blocks = len(backbone.encoder_blocks())
        bad = [b for b in self.blocks if not 0 <= b < n_blocks and b != INPUT_EMBEDDING]
        if bad:
            raise ValueError(f"{backbone.name} has {n_blocks} encoder blocks; requested block(s) {bad}")
        self.stop = backbone.frozen_prefix() if cache_root else 0
        cached = tuple(s.block for s in steps[: self.stop] if s.block is not None and s.block in self.blocks)
        if INPUT_EMBEDDING in self.blocks and any(s.block == 0 for s in steps[: self.stop]):
            cached = (INPUT_EMBEDDING, *cached)  # the input of block 0 lies inside the cached prefix
        self.cache = EncoderCache(cache_root, backbone, self.stop, cached, dtype, compute) if self.stop > 0 else None
        log.info("%s: %d of %d encoder steps served from the cache", backbone.name, self.stop, len(steps))

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        if self.cache is None:
            return self.backbone.encode(images, start=0, blocks=self.blocks)
        x, feats = self.cache(images)
        z, later = self.backbone.encode(x, start=self.stop, blocks=self.blocks)
        return z, {**feats, **later}
