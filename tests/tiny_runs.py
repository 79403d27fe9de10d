"""Seconds-long sweeps on tiny_sam and tiny synthetic data, shared by the tests that run the real pipeline."""

from __future__ import annotations

import json
from pathlib import Path

from bench.config import BenchConfig, RunConfig
from bench.runs.results import METRICS_FILE
from bench.runs.sweep import load_config, run_configs

REPO = Path(__file__).resolve().parents[1]


def sweep_args(tmp_path: Path, *extra: str, runs: str = "runs", cache: str = "cache") -> list[str]:
    """Overrides of a seconds-long sweep: tiny_sam, one small synthetic domain, inline launcher."""
    return [
        "sweep=smoke",
        "report.name=smoke",  # overrides change the runs; the tests read smoke.* (reports/names.py)
        "backbone.name=tiny_sam",
        "launcher=inline",
        "train.epochs=2",
        "methods=[adapter]",
        "datasets=[synth_polyp]",
        f"runs_dir={tmp_path / runs}",
        f"data.cache_dir={tmp_path / cache}",
        "data.synth.train_size=8",
        "data.synth.val_size=4",
        "data.synth.test_size=4",
        "data.synth.min_side=64",
        "data.synth.max_side=96",
        f"launcher.folder={tmp_path / 'submitit'}",
        *extra,
    ]


def sweep(tmp_path: Path, *extra: str, runs: str = "runs", cache: str = "cache") -> BenchConfig:
    return load_config(sweep_args(tmp_path, *extra, runs=runs, cache=cache))


def single_run(cfg: BenchConfig) -> RunConfig:
    runs = run_configs(cfg)
    assert len(runs) == 1
    return runs[0]


def metric_values(run_dir: Path) -> dict:
    return json.loads((run_dir / METRICS_FILE).read_text())["metrics"]
