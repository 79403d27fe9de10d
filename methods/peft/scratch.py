"""Training from scratch: random initialisation, then every parameter trains (the Conv-LoRA table's "SAM trained
from scratch" row, 641.09 M / 100 % on SAM ViT-H).

Random weights are the point of this method, and a full-size model on random weights is otherwise an accident,
so the switch is explicit: on every backbone but the tiny test ones (``tiny_*``) the launcher refuses
``scratch`` unless ``backbone.random_init=true`` is set (:meth:`Scratch.check_backbone`, called before any
checkpoint is looked up, so none is downloaded or loaded to be thrown away). In a sweep next to pretrained rows:
``{name: scratch, label: random init, set: {backbone.random_init: true}}``.

The weights: the builder's own random construction (``backbone.random_init=true``), then :meth:`Scratch.inject`
calls ``reset_parameters()`` of every submodule that has one (Linear, Conv, LayerNorm, Embedding, ...), drawn
from the run's seed (+ :data:`SEED_OFFSET`). The redraw is what makes the method random on the backbones whose
builder has no random mode (the tiny test backbones' seeded stand-ins, LiteMedSAM's bundled weights); parameters
outside such modules (ViT position embeddings, SAM's ``LayerNorm2d``, TinyViT's attention biases) keep the
builder's values, which under ``backbone.random_init=true`` are the official construction values (on LiteMedSAM,
whose builder always loads the bundled file, 8,444 such parameters keep their pretrained values). The backbone is
then marked ``weights_id = "random"`` and ``random_by_method = True``: the provenance records the random weights as the
method's design (:func:`bench.runs.provenance.weights_record`) and reports say "trained from scratch" instead of
warning about random weights.

What trains is what ``full`` trains: everything but the parts no forward reaches
(:func:`bench.contracts.peft.unused_decoder_modules`, :func:`methods.peft.full.unreached_parameters`): 640.53 M
on SAM ViT-H against the table's 641.09 M, which counts the whole model (0.552 M of it, the hypernetwork MLPs
of mask tokens 1..3 and the IoU head, and the 4,684 of the mask-prompt branch never receive a gradient; the same
table's decoder-only row, 3.51 M, leaves the decoder's out too).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from bench.backbones import Backbone
from bench.config import BackboneConfig, ConfigError
from bench.contracts.peft import PEFT_METHODS
from bench.contracts.weights import WEIGHTS

from .full import Full

log = logging.getLogger(__name__)

TEST_BACKBONE_PREFIX = "tiny_"  # bench/backbones/tiny.py: seeded stand-ins, random by construction
# The redraw's seed is the run's seed plus this offset: the tiny stand-ins' "pretrained" weights are PyTorch's
# default init drawn from seed 0, so a redraw from the run's own seed 0 would reproduce them exactly.
SEED_OFFSET = 0x5C7A7C4


def is_test_backbone(name: str) -> bool:
    """Whether ``name`` is one of the tiny test backbones (the only ones ``scratch`` runs on without the switch)."""
    return name.startswith(TEST_BACKBONE_PREFIX)


def reinitialise(module: nn.Module) -> tuple[int, int]:
    """Call ``reset_parameters()`` on every submodule of ``module`` that defines it.

    Returns:
        (parameters re-drawn, parameters left as they were: those of modules without ``reset_parameters``).
    """
    reset: set[int] = set()
    for sub in module.modules():
        reset_fn = getattr(sub, "reset_parameters", None)
        if callable(reset_fn):
            reset_fn()
            reset.update(id(p) for p in sub.parameters(recurse=False))
    params = list(module.parameters())
    drawn = sum(p.numel() for p in params if id(p) in reset)
    return drawn, sum(p.numel() for p in params) - drawn


@PEFT_METHODS.register("scratch", mergeable=True)
class Scratch(Full):
    """Re-initialises the backbone at random, then trains it as ``full`` does."""

    identity_at_init = False

    @classmethod
    def check_backbone(cls, cfg: BackboneConfig) -> None:
        if is_test_backbone(cfg.name) or cfg.random_init:
            return
        raise ConfigError(
            f"method 'scratch' trains {cfg.name} from RANDOM weights (SAM trained from scratch); on a full-size "
            "backbone that must be asked for explicitly: add backbone.random_init=true (in a sweep, the row "
            "{name: scratch, label: random init, set: {backbone.random_init: true}}). No checkpoint is needed "
            "or loaded for it."
        )

    def inject(self, backbone: Backbone) -> list[str]:
        if backbone.name in WEIGHTS and backbone.weights_id != "random":
            # the launcher's check_backbone was bypassed: official weights were loaded without the switch
            raise ConfigError(
                f"method 'scratch' got {backbone.name} with its official weights ({backbone.weights_id}); build it "
                "with backbone.random_init=true to train it from scratch"
            )
        seed = (torch.initial_seed() + SEED_OFFSET) % 2**63  # initial_seed: the run's seed (build_student sets it)
        with torch.random.fork_rng(devices=[]):  # the global stream stays as under every other method
            torch.manual_seed(seed)
            drawn, kept = reinitialise(backbone)
        backbone.weights_id = "random"
        backbone.checkpoint_path = None
        backbone.checkpoint_sha256 = None
        backbone.random_by_method = True
        log.info(
            "scratch: %s re-initialised at random (%.3fM parameters re-drawn, %.3fM without reset_parameters "
            "kept from the builder)",
            backbone.name,
            drawn / 1e6,
            kept / 1e6,
        )
        return super().inject(backbone)
