"""The PEFT contract: how a student backbone is parameterised for fine-tuning.

A PEFT method freezes the backbone, injects its own modules (wrapping the originals, never editing
the library code), marks what it trains, and returns the names of the modules it targeted. The
trainer never asks which method it is: it trains whatever ``requires_grad`` says after
:meth:`PeftMethod.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from bench.config import BackboneConfig, ConfigError
from bench.contracts.backbone import Backbone
from bench.contracts.options import build_options
from bench.registry import Registry


@dataclass
class NoOptions:
    """This method has no options."""


class PeftMethod:
    """Base class. Subclasses set ``Options`` and implement :meth:`inject`.

    Class attributes:
        Options: dataclass of the method's options (validated in ``__post_init__``).
        train_decoder: Whether the mask decoder is trained (most methods, as in InfoSAM's code), but for the
            parts no loss reads (:func:`unused_decoder_modules`).
        identity_at_init: Whether the wrapped model reproduces the pretrained outputs before training
            (checked by the contract tests).
        unsupported: Backbone families (``Backbone.family``: ``"sam"``, ``"sam2"``, ``"tinyvit"``) the
            method cannot be applied to, each with the reason; the launcher refuses those runs.
        unsupported_tasks: Dataset tasks (``DatasetInfo.task``: ``"semantic"``, ``"instances"``) the method cannot
            serve, each with the reason (e.g. a decoder extension that rewrites SAM's one-mask logits has no
            multi-class form); the launcher refuses those runs.

    A method that needs a particular backbone configuration says so in :meth:`check_backbone`, which the
    launcher calls before any weights are looked up or loaded.
    """

    Options: ClassVar[type] = NoOptions
    train_decoder: ClassVar[bool] = True
    identity_at_init: ClassVar[bool] = True
    unsupported: ClassVar[dict[str, str]] = {}
    unsupported_tasks: ClassVar[dict[str, str]] = {}

    def __init__(self, options: Any) -> None:
        self.options = options

    @classmethod
    def check_backbone(cls, cfg: BackboneConfig) -> None:
        """Raise :class:`ConfigError` (saying why and how to proceed) if the method refuses to run on the
        backbone ``cfg`` describes. Called by the launcher's validation before any checkpoint is resolved or
        loaded (``scratch`` refuses full-size backbones without ``backbone.random_init=true``). Default: accept."""

    def inject(self, backbone: Backbone) -> list[str]:
        """Add the method's modules to the frozen backbone; return the targeted module names."""
        return []

    def feature_blocks(self, backbone: Backbone) -> tuple[int, ...]:
        """Encoder block indices whose outputs the method's decoder needs (passed to
        ``backbone.decode`` as ``blocks``; HQ-SAM's early features). Default: none."""
        return ()

    def loss_terms(self) -> dict[str, torch.Tensor]:
        """Extra named loss terms from the last forward pass (e.g. ConvLoRA's load-balancing loss),
        already weighted. Called by the trainer after every training forward. Default: none."""
        return {}

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters that get a gradient only from the samples routed to them (the experts
        of a mixture), so one batch need not reach all of them. Default: none."""
        return []

    def apply(self, backbone: Backbone) -> list[str]:
        """Freeze ``backbone``, inject, unfreeze the decoder if the method trains it.

        The decoder parts :func:`unused_decoder_modules` names stay frozen: they never receive a
        gradient, so the optimizer and the parameter count leave them out.

        Returns:
            Names of the targeted modules (``"mask_decoder"`` included when it is trained).
        """
        backbone.requires_grad_(False)
        targeted = self.inject(backbone)
        if self.train_decoder:
            backbone.mask_decoder.requires_grad_(True)
            for module in unused_decoder_modules(backbone):
                module.requires_grad_(False)
            targeted.append("mask_decoder")
        return targeted


@runtime_checkable
class Foldable(Protocol):
    """A wrapper module whose change folds into a plain layer (LoRA's ``W + ΔW``, SSF's scale and shift).

    A method registered with ``mergeable=True`` (``@PEFT_METHODS.register("lora", mergeable=True)``) adds
    only such modules (or none): ``export`` then writes the official model's plain state dict.
    """

    def fold(self) -> nn.Module:
        """A new plain module computing the same outputs as this wrapper."""
        ...


PEFT_METHODS: Registry[type[PeftMethod]] = Registry("peft method", "methods")
"""PEFT methods, registered with ``@PEFT_METHODS.register("name")`` in any module under ``methods/``."""


def build_peft(name: str, values: dict[str, Any]) -> PeftMethod:
    cls = PEFT_METHODS.get(name)
    return cls(build_options(cls.Options, values, f"peft method {name!r}"))


def select_blocks(backbone: Backbone, start: int, end: int | None) -> list[tuple[int, nn.Module]]:
    """Encoder blocks ``start..end`` (end exclusive, None = last); raises if the range is empty."""
    blocks = backbone.encoder_blocks()
    chosen = list(enumerate(blocks))[start:end]
    if not chosen:
        raise ConfigError(f"no encoder blocks in range [{start}, {end}) of {backbone.name} ({len(blocks)} blocks)")
    return chosen


def unused_decoder_modules(backbone: Backbone) -> list[nn.Module]:
    """Mask-decoder modules outside every training loss of the suite.

    ``Backbone.decode`` keeps the single-mask output (``multimask_output=False``), so the hypernetwork
    MLPs of mask tokens 1..3 are never evaluated; no loss reads the predicted IoU (the IoU head is
    evaluated for ``DecoderOutput.iou`` but trains on nothing; Conv-LoRA freezes it too) nor SAM2's
    object score. The mask *tokens* 1..3 and the IoU token do receive a gradient (they take part in
    the two-way transformer's attention) and stay trainable.
    """
    dec = backbone.mask_decoder
    unused: list[nn.Module] = list(dec.output_hypernetworks_mlps[1:])
    for name in ("iou_prediction_head", "pred_obj_score_head"):
        module = getattr(dec, name, None)
        if isinstance(module, nn.Module):
            unused.append(module)
    return unused


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
