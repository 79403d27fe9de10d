"""Backbones: one file per model family, each registering its variants in ``BACKBONES``."""

from . import litemedsam, mobilesam, sam, sam2, tiny  # noqa: F401  (registration)
from ._base import (
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
