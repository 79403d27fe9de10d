"""Backbones: one file per model family, each registering its variants in ``BACKBONES``.

The contract they implement is :mod:`bench.contracts.backbone` (re-exported here). The families are found
by discovery (:mod:`bench.discovery`) on the first lookup in ``BACKBONES``: adding a
file here is all it takes.
"""

from bench.contracts.backbone import (
    BACKBONES,
    Backbone,
    CheckpointError,
    DecoderOutput,
    EncoderStep,
    Prompts,
    attach_weights,
    backbone_family,
    build_backbone,
    load_checkpoint,
    register_backbone,
)

__all__ = [
    "BACKBONES",
    "Backbone",
    "CheckpointError",
    "attach_weights",
    "DecoderOutput",
    "EncoderStep",
    "Prompts",
    "backbone_family",
    "build_backbone",
    "load_checkpoint",
    "register_backbone",
]
