"""Encoder front-ends that reuse cached frozen states: the student's frozen prefix, the whole teacher."""

from __future__ import annotations

import logging
from typing import Optional

import torch

from bench.backbones import Backbone
from bench.cache import EncoderCache

log = logging.getLogger(__name__)


class CachedEncoder:
    """``backbone.encode`` that starts from the cached output of the longest frozen prefix.

    Args:
        backbone: The model (its PEFT modules already injected).
        cache_root: ``data.cache_dir``; None disables caching.
        blocks: Block indices whose outputs are requested (never served from the cache).
    """

    def __init__(self, backbone: Backbone, cache_root: Optional[str], blocks: tuple[int, ...] = ()) -> None:
        self.backbone = backbone
        self.blocks = tuple(blocks)
        steps = backbone.encoder_steps()
        stop = backbone.frozen_prefix()
        for i, step in enumerate(steps):
            if step.block is not None and step.block in self.blocks:
                stop = min(stop, i)
        self.stop = stop if cache_root else 0
        self.cache = EncoderCache(cache_root, backbone, self.stop) if self.stop > 0 else None
        log.info("%s: %d of %d encoder steps served from the cache", backbone.name, self.stop, len(steps))

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        x = self.cache(images) if self.cache is not None else images
        return self.backbone.encode(x, start=self.stop, blocks=self.blocks)
