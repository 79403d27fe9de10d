"""Which figures apply to a sweep, and the data they are drawn from (run directories of the sweep).

* a ``grid:`` of exactly two keys → the heatmap (Fig. 6; ``fig6`` / ``lambda_grid``);
* the sweeps in :data:`BF1_SWEEPS` → boundary-F1 curves (Fig. 7);
* any run with exported relation maps (``distill.export_epochs``) → the relation-map figure (Fig. 8/9),
  one per (dataset, row), from its lowest complete seed.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np

from bench.config import BenchConfig, RunConfig, row_label, to_dict
from bench.contracts.dataset import dataset_info
from bench.eval.metrics import BF1_TOLERANCES, METRICS

from . import plots
from .render import LATEX_METRICS

log = logging.getLogger(__name__)

BF1_SWEEPS = ("fig7",)


def _dotted(run: RunConfig, key: str) -> Any:
    node: Any = to_dict(run)
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _row_without_grid(run: RunConfig, keys: list[str]) -> str:
    parts = [p for p in run.variant.split(",") if p and not any(p.startswith(f"{k}=") for k in keys)]
    return f"{run.method} [{','.join(parts)}]" if parts else run.method


def headline_metric(dataset: str, record: Optional[dict[str, Any]]) -> str:
    metrics = record["report_metrics"] if record and record.get("report_metrics") else dataset_info(dataset).metrics
    return metrics[0]


Named = list[tuple[RunConfig, str]]  # runs with their directory names


def heatmap(cfg: BenchConfig, runs: Named, records: dict[str, dict[str, Any]], stem: Path) -> list[Path]:
    keys = list(cfg.grid)
    panels: dict[str, dict[tuple[object, object], list[float]]] = {}
    labels: dict[str, str] = {}
    for run, name in runs:
        rec = records.get(name)
        metric = headline_metric(run.dataset, rec)
        title = f"{run.dataset} · {_row_without_grid(run, keys)}"
        labels[title] = LATEX_METRICS.get(metric, METRICS[metric].label if metric in METRICS else metric)
        cell = panels.setdefault(title, {}).setdefault((_dotted(run, keys[0]), _dotted(run, keys[1])), [])
        if rec is not None and metric in rec["metrics"]:
            cell.append(float(rec["metrics"][metric]))
    axes = (list(cfg.grid[keys[0]]), list(cfg.grid[keys[1]]))
    return plots.grid_heatmap(stem, panels, (keys[0], keys[1]), axes, labels)


def bf1_of_run(path: Path, record: dict[str, Any]) -> Optional[np.ndarray]:
    cols = [f"bf1_{k}" for k in BF1_TOLERANCES]
    per_image = path / "per_image.csv"
    if per_image.is_file():
        with per_image.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows and all(c in rows[0] for c in cols):
            return np.array([np.mean([float(r[c]) for r in rows]) for c in cols])
    if all(c in record["metrics"] for c in cols):
        return np.array([float(record["metrics"][c]) for c in cols])
    return None


def bf1(cfg: BenchConfig, runs: Named, records: dict[str, dict[str, Any]], stem: Path) -> list[Path]:
    curves: dict[str, dict[str, list[np.ndarray]]] = {}
    for run, name in runs:
        rec = records.get(name)
        values = bf1_of_run(Path(cfg.runs_dir) / name, rec) if rec is not None else None
        if values is not None:
            curves.setdefault(run.dataset, {}).setdefault(row_label(run), []).append(values)
    if not curves:
        return []
    return plots.bf1_curves(stem, curves, BF1_TOLERANCES)


def relation_maps(cfg: BenchConfig, runs: Named, records: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    chosen: dict[tuple[str, str], tuple[RunConfig, Path]] = {}
    for run, name in sorted(runs, key=lambda r: r[0].seed):
        folder = Path(cfg.runs_dir) / name / "relation_maps"
        if name in records and list(folder.glob("epoch_*.npz")):
            chosen.setdefault((run.dataset, row_label(run)), (run, folder))
    paths: list[Path] = []
    for (dataset, label), (run, folder) in chosen.items():
        epochs = {}
        for npz in sorted(folder.glob("epoch_*.npz")):
            with np.load(npz) as data:
                epochs[int(npz.stem.split("_")[1])] = {"teacher": data["teacher"], "student": data["student"]}
        slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{dataset}_{label}").strip("_")
        title = f"relation maps, {dataset} · {label} · seed {run.seed} (probe image 0; histograms: all probe maps)"
        paths += plots.relation_map_figure(out / f"{cfg.sweep}_relation_maps_{slug}", title, epochs)
    return paths


def write_figures(cfg: BenchConfig, runs: Named, records: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """Draw every figure that applies to the sweep into ``out``; returns the files written."""
    paths: list[Path] = []
    if len(cfg.grid) == 2:
        paths += heatmap(cfg, runs, records, out / f"{cfg.sweep}_heatmap")
    if cfg.sweep in BF1_SWEEPS:
        paths += bf1(cfg, runs, records, out / f"{cfg.sweep}_bf1")
    paths += relation_maps(cfg, runs, records, out)
    return paths
