"""The heatmap of a two-key grid sweep (Fig. 6: ``fig6``, ``lambda_grid``), one panel per (dataset, row)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.config import BenchConfig, RunConfig, to_dict

from .. import plots
from ..labels import metric_label
from ..render import LATEX_METRICS
from . import FIGURES, Named, headline_metric, stem_of


def _dotted(run: RunConfig, key: str) -> Any:
    node: Any = to_dict(run)
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _row_without_grid(run: RunConfig, keys: list[str]) -> str:
    parts = [p for p in run.variant.split(",") if p and not any(p.startswith(f"{k}=") for k in keys)]
    return f"{run.method} [{','.join(parts)}]" if parts else run.method


@FIGURES.register("heatmap", order=0)
def heatmap(cfg: BenchConfig, runs: Named, records: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """Drawn when the sweep's ``grid:`` has exactly two keys."""
    if len(cfg.grid) != 2:
        return []
    stem = out / f"{stem_of(cfg)}_heatmap"
    keys = list(cfg.grid)
    panels: dict[str, dict[tuple[object, object], list[float]]] = {}
    labels: dict[str, str] = {}
    for run, name in runs:
        rec = records.get(name)
        metric = headline_metric(run.dataset, rec)
        title = f"{run.dataset} · {_row_without_grid(run, keys)}"
        labels[title] = LATEX_METRICS.get(metric, metric_label(metric))
        cell = panels.setdefault(title, {}).setdefault((_dotted(run, keys[0]), _dotted(run, keys[1])), [])
        if rec is not None and metric in rec["metrics"]:
            cell.append(float(rec["metrics"][metric]))
    axes = (list(cfg.grid[keys[0]]), list(cfg.grid[keys[1]]))
    return plots.grid_heatmap(stem, panels, (keys[0], keys[1]), axes, labels)
