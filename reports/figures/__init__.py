"""The report's figures: one file each in this package, registering a drawing function in :data:`FIGURES`.

A figure is ``draw(cfg, runs, records, out) -> list[Path]``: the sweep's config, its runs with their directory
names, the records of the complete ones (by name) and the report folder; it decides itself whether it applies
to the sweep (returning ``[]`` when it does not) and writes ``<report>_<figure>.{png,pdf}`` through
:func:`reports.figfiles.save_figure`, ``<report>`` being :func:`stem_of` (the report's name,
:mod:`reports.names`; whether a figure applies keys on ``cfg.sweep``, the sweep file's name).
``register(name, order=N)``: the order of the figures on the HTML page.

* ``heatmap``: a ``grid:`` of exactly two keys (Fig. 6; ``fig6`` / ``lambda_grid``);
* ``bf1``: boundary-F1 curves over tolerances (Fig. 7);
* ``relation_maps``: any run with exported relation maps (``distill.export_epochs``), one figure per
  (dataset, row), from its lowest complete seed (Fig. 8/9);
* ``qualitative``: the kept test images of every dataset with each row's prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from bench.config import BenchConfig, RunConfig
from bench.contracts.dataset import dataset_info
from bench.registry import Registry

Named = list[tuple[RunConfig, str]]  # runs with their directory names
Figure = Callable[[BenchConfig, Named, dict[str, dict[str, Any]], Path], list[Path]]

FIGURES: Registry[Figure] = Registry("report figure", "reports.figures")


def stem_of(cfg: BenchConfig) -> str:
    """The report's file stem: ``report.name`` (resolved by the report, :mod:`reports.names`), else the sweep's."""
    return cfg.report.name or cfg.sweep


def headline_metric(dataset: str, record: Optional[dict[str, Any]]) -> str:
    metrics = record["report_metrics"] if record and record.get("report_metrics") else dataset_info(dataset).metrics
    return metrics[0]


def write_figures(cfg: BenchConfig, runs: Named, records: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """Draw every registered figure that applies to the sweep into ``out``; returns the files written."""
    names = sorted(FIGURES.names(), key=lambda n: (FIGURES.meta(n).get("order", 100), n))
    return [path for name in names for path in FIGURES.get(name)(cfg, runs, records, out)]
