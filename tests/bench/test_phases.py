"""The phase clock (bench/phases.py) and the phases a run records."""

from __future__ import annotations

import json

import pytest

from bench import phases
from bench.phases import PhaseClock, breakdown, summed
from bench.runs.launcher import launch
from bench.runs.results import RunDir
from bench.runs.sweep import run_configs
from tests.tiny_runs import sweep


@pytest.fixture
def fake_time(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(phases.time, "perf_counter", lambda: now[0])
    return now


def test_a_nested_phase_is_taken_off_the_enclosing_one(fake_time):
    clock = PhaseClock()
    with clock.phase("train"):
        fake_time[0] += 10
        with clock.phase("val_selection"):
            fake_time[0] += 3
        fake_time[0] += 1
    assert clock.take() == {"train": 11.0, "val_selection": 3.0}
    assert clock.take() == {}


def test_breakdown_keeps_the_scoring_thread_out_of_the_total():
    text = breakdown(summed([{"train": 6.0, "metrics.clean": 2.0}, {"train": 2.0, "test_eval": 2.0}]), 9.5)
    assert "  train               8.0   80.0 %" in text
    assert "  total              10.0   wall time 9.5 s" in text
    assert "scoring thread, inside val_selection / test_eval: 2.0 s (clean 2.0)" in text


def test_a_run_records_its_phases(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = sweep(tmp_path)
    runs = run_configs(cfg)
    launch(cfg, runs)
    record = json.loads(RunDir(cfg.runs_dir, runs[0]).metrics_file.read_text())
    got = record["phases"]
    assert {"data", "build", "train", "val_selection", "test_eval", "metrics.clean", "metrics.infosam"} <= set(got)
    assert all(v > 0 for v in got.values())
    # the phases account for the run: together within the time the run's own clock measured
    main = sum(v for k, v in got.items() if not k.startswith("metrics.") and k != "imports")
    assert main <= record["train_seconds"] + record["eval_seconds"] + 0.5
