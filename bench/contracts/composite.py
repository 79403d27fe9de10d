"""Several distillers on one student: ``tinysam+rm``, ``lora+tinysam+rm`` (InfoSAM Table 5).

The composite builds every chained distiller on the same context and returns all their terms, each
prefixed with its part's name (``tinysam.l_embed``, ``rm.l_d``), for the trainer to sum; it asks for
the union of the parts' encoder blocks and forwards the epoch hook and the artifacts to every part.
Options are namespaced per part: ``distill.tinysam.w_mask=2 distill.rm.lambda2=1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from bench.config import ConfigError
from bench.contracts.distill import DISTILLERS, DistillContext, Distiller, Features
from bench.contracts.options import build_options


@dataclass
class CompositeOptions:
    """Each chained distiller's name → its built options, in chain order."""

    parts: dict[str, Any] = field(default_factory=dict)


def composite_options(names: tuple[str, ...], values: dict[str, Any], method: str) -> CompositeOptions:
    """Validate namespaced ``distill.<name>.<option>`` values of a chain; ConfigError names the problem."""
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"method {method!r} chains the distillers {list(names)}, so distill options are namespaced per "
            f"distiller (distill.<name>.<option>, e.g. distill.{names[0]}.<option>=...); "
            f"{', '.join(f'distill.{k}' for k in unknown)} names none of them"
        )
    parts = {}
    for name in names:
        sub = values.get(name)
        if sub is None:
            sub = {}
        if not isinstance(sub, dict):
            raise ConfigError(
                f"distill.{name} must hold the options of distiller {name!r} (distill.{name}.<option>=...), got {sub!r}"
            )
        parts[name] = build_options(DISTILLERS.get(name).Options, dict(sub), f"distiller {name!r} (in {method})")
    return CompositeOptions(parts)


class CompositeDistiller(Distiller):
    """The chained distillers of one method, as one :class:`Distiller`.

    Args:
        options: :class:`CompositeOptions` (from :func:`composite_options`).
        context: Shared by every part.
    """

    Options = CompositeOptions

    def __init__(self, options: CompositeOptions, context: DistillContext) -> None:
        super().__init__(options, context)
        if len(options.parts) < 2:
            raise ValueError(f"a composite distiller chains at least two distillers, got {list(options.parts)}")
        self.parts = nn.ModuleDict({name: DISTILLERS.get(name)(opts, context) for name, opts in options.parts.items()})
        self.student_blocks = tuple(sorted({b for p in self.parts.values() for b in p.student_blocks}))
        self.teacher_blocks = tuple(sorted({b for p in self.parts.values() for b in p.teacher_blocks}))

    def forward(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Every part's terms, named ``<part>.<term>``."""
        terms: dict[str, torch.Tensor] = {}
        for name, part in self.parts.items():
            for term, value in part(student, teacher, batch).items():
                terms[f"{name}.{term}"] = value
        return terms

    def on_epoch_end(self, epoch: int, probe: Callable[[], tuple[Features, Optional[Features]]], run_dir: Path) -> None:
        for part in self.parts.values():
            part.on_epoch_end(epoch, probe, run_dir)

    def save_artifacts(self, run_dir: Path) -> None:
        for part in self.parts.values():
            part.save_artifacts(run_dir)
