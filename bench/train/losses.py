"""The binary structure loss, kept importable here for the trainer and older callers; it lives in
:mod:`bench.tasks.structure` so that the tasks room (below ``train``) can use it too."""

from bench.tasks.structure import VARIANTS, balanced_bce, boundary_weight, box_mean, structure_loss

__all__ = ["VARIANTS", "balanced_bce", "boundary_weight", "box_mean", "structure_loss"]
