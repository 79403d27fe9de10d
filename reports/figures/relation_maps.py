"""The relation-map figure (Fig. 8/9): teacher and student relation maps over epochs, one per (dataset, row)
from its lowest complete seed, for runs that exported them (``distill.export_epochs``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import BenchConfig, RunConfig, row_label

from .. import plots
from . import FIGURES, Named, stem_of


@FIGURES.register("relation_maps", order=2)
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
        paths += plots.relation_map_figure(out / f"{stem_of(cfg)}_relation_maps_{slug}", title, epochs)
    return paths
