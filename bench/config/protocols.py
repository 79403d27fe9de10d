"""Named protocols: one word (``protocol=NAME``) selects a whole training recipe and evaluation.

A protocol is one file in the top-level ``protocols/`` package that registers a :class:`Protocol` in
:data:`PROTOCOL_REGISTRY`: a layer of config defaults applied between the schema and the sweep file (so a
sweep or the command line can still override a single key, visibly, in the run's ``config.yaml``), per-method
and per-dataset-family defaults, the metric definition its tables report (with the per-image scoring
function when that definition is its own), and its checkpoint-selection rule. The core reads these fields
and never tests a protocol's name. ``protocol`` itself is a run key, so it is part of every run's hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from bench.config import ConfigError
from bench.registry import Registry, UnknownNameError

# per-image scoring of one metric definition: (float logits HxW, 0/1 ground truth HxW; numpy arrays) -> {metric: value}
ScoreFn = Callable[[Any, Any], dict[str, float]]


@dataclass(frozen=True)
class Protocol:
    """One named recipe + evaluation.

    Attributes:
        name: The value of ``protocol=``.
        summary: One line for ``list``, report titles and LaTeX captions.
        order: Position in ``list``, in error messages and among the metric columns of ``per_image.csv``.
        preset: Dotted config keys → values, applied under the sweep file and the command line.
        method_defaults: PEFT method name → option defaults (``peft.*``) applied where the run sets none.
        dataset_values: Dataset family (``"*"`` = every family) → dotted config values, applied to that
            dataset's runs unless the sweep file or the command line set the key.
        report_metrics: Dataset family → the metrics its tables report (default: the dataset's own).
        metrics: The metric definition its tables report (a name of :func:`bench.eval.evaluate.definitions`).
        score: The per-image scoring of that definition when the protocol defines it (``None``: it reports
            another protocol's definition); every run is scored under every registered definition.
        val_metrics: The definition that scores the validation split when ``eval.select=val_best``.
        paper_tables: Whether the published InfoSAM values are comparable with its runs ("paper / Δ").
        semantic_head: The multi-class head of ``task.head=auto`` on a ``semantic`` dataset (:mod:`bench.tasks`).
        semantic_queries: The number of mask tokens of the ``queries`` head when ``task.queries`` is unset.
    """

    name: str
    summary: str
    order: int = 100
    preset: dict[str, Any] = field(default_factory=dict)
    method_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    report_metrics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    metrics: str = "clean"
    score: Optional[ScoreFn] = None
    val_metrics: str = "clean"
    paper_tables: bool = False
    semantic_head: str = "per_class"
    semantic_queries: int = 10

    def metrics_for(self, family: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """The metrics a table shows for a dataset family (the first decides "best" in checkpoint selection)."""
        return self.report_metrics.get(family, default)

    def selection_metrics(self, select: str) -> str:
        """The definition checkpoint selection scores with under the rule ``select`` (``eval.select``)."""
        return self.val_metrics if select == "val_best" else self.metrics


PROTOCOL_REGISTRY: Registry[Protocol] = Registry("protocol", "protocols")


def register_protocol(protocol: Protocol) -> Protocol:
    """Register ``protocol`` under its name (what a file of ``protocols/`` calls once)."""
    PROTOCOL_REGISTRY.add(protocol.name, protocol)
    return protocol


def protocols_in_order() -> list[Protocol]:
    """Every registered protocol, by ``order`` then name."""
    return sorted((PROTOCOL_REGISTRY.get(n) for n in PROTOCOL_REGISTRY.names()), key=lambda p: (p.order, p.name))


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOL_REGISTRY.get(name)
    except UnknownNameError:
        valid = ", ".join(p.name for p in protocols_in_order())
        raise ConfigError(f"unknown protocol {name!r}; valid: {valid}") from None


def method_defaults(protocol: str, peft_name: str, values: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """``values`` with the protocol's defaults for ``peft_name`` filled in where the run set none."""
    defaults = get_protocol(protocol).method_defaults.get(peft_name, {})
    return {**{k: v for k, v in defaults.items() if k in fields}, **values}
