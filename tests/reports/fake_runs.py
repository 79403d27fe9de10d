"""Fake run directories in the format ``bench/runs/results.py`` writes (``metrics.json``, ``per_image.csv``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from bench.config import BenchConfig, RunConfig, row_label
from bench.contracts.dataset import dataset_info
from bench.runs.results import RunDir
from bench.runs.sweep import run_configs


def write_run(
    runs_dir: str | Path,
    run: RunConfig,
    metrics: dict[str, float],
    per_image: Optional[list[dict]] = None,
    record: Optional[dict[str, Any]] = None,
) -> RunDir:
    """Write a complete run: ``config.yaml``, ``per_image.csv`` (if given) and ``metrics.json`` (``record``:
    fields added to or replacing the fabricated ones, e.g. ``metrics_by_definition``, ``task``)."""
    rd = RunDir(runs_dir, run)
    rd.start()
    if per_image is not None:
        rd.write_per_image(per_image)
    rd.write_metrics(
        {
            **rd.identity(),
            "metrics": metrics,
            "report_metrics": list(dataset_info(run.dataset).metrics),
            "status": "complete",
            **(record or {}),
        }
    )
    return rd


def find_run(cfg: BenchConfig, label: str, dataset: str, seed: int) -> RunConfig:
    for run in run_configs(cfg):
        if row_label(run) == label and run.dataset == dataset and run.seed == seed:
            return run
    raise KeyError((label, dataset, seed))


def per_image_rows(bf1: list[float], n: int = 3, jitter: float = 0.01) -> list[dict]:
    """``n`` images whose ``bf1_k`` columns average to ``bf1`` exactly."""
    offsets = np.linspace(-jitter, jitter, n)
    return [{"name": f"img{i}", **{f"bf1_{k}": v + offsets[i] for k, v in enumerate(bf1)}} for i in range(n)]
