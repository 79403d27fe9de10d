"""Boundary-F1 curves over the tolerances (Fig. 7), one panel per dataset, for the sweeps in :data:`BF1_SWEEPS`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Optional

import numpy as np

from bench.config import BenchConfig, row_label
from bench.eval.metrics import BF1_TOLERANCES

from .. import plots
from . import FIGURES, Named, stem_of

BF1_SWEEPS = ("fig7",)


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


@FIGURES.register("bf1", order=1)
def bf1(cfg: BenchConfig, runs: Named, records: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    if cfg.sweep not in BF1_SWEEPS:
        return []
    stem = out / f"{stem_of(cfg)}_bf1"
    curves: dict[str, dict[str, list[np.ndarray]]] = {}
    for run, name in runs:
        rec = records.get(name)
        values = bf1_of_run(Path(cfg.runs_dir) / name, rec) if rec is not None else None
        if values is not None:
            curves.setdefault(run.dataset, {}).setdefault(row_label(run), []).append(values)
    if not curves:
        return []
    return plots.bf1_curves(stem, curves, BF1_TOLERANCES)
