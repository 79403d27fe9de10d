"""Backbones: one file per model family, each registering its variants in ``BACKBONES``."""

from . import litemedsam, sam, tiny  # noqa: F401  (registration)
from ._base import (
    BACKBONES,
    Backbone,
    CheckpointError,
    DecoderOutput,
    EncoderStep,
    Prompts,
    build_backbone,
    load_checkpoint,
)

__all__ = [
    "BACKBONES",
    "Backbone",
    "CheckpointError",
    "DecoderOutput",
    "EncoderStep",
    "Prompts",
    "build_backbone",
    "load_checkpoint",
]
