"""The sweep's progress bar weighs runs by their planned work (bench/runs/progress.py)."""

from __future__ import annotations

import json

import pytest

from bench.runs.progress import Weight, WorkPlan, planned_weights
from bench.runs.results import RunDir
from bench.runs.sweep import run_configs
from tests.tiny_runs import sweep


def test_planned_weights_follow_the_work_not_the_run_count(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = run_configs(sweep(tmp_path, "methods=[zero_shot,decoder_only,adapter]"))
    zero, decoder, adapter = planned_weights(runs)
    assert zero.steps == 0 and zero.train == 0 and zero.score > 0  # scores its test split only
    assert decoder.steps == adapter.steps == 4  # 8 training images, batch 4, 2 epochs
    # an adapter step trains through the encoder, a decoder-only step reads the cached embedding
    assert adapter.train > 3 * decoder.train > 0
    assert adapter.total > 10 * zero.total


def test_the_bar_counts_finished_runs_whole_and_running_ones_by_their_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = run_configs(sweep(tmp_path, "methods=[zero_shot,adapter,lora]"))
    dirs = [RunDir(tmp_path / "runs", r) for r in runs]
    work = WorkPlan(runs, dirs)
    assert work.fraction() == 0.0  # nothing planned yet, nothing done: by runs
    work.weights = [Weight(0, 0.0, 1.0), Weight(10, 8.0, 1.0), Weight(10, 9.0, 1.0)]
    done, running = dirs[0], dirs[1]
    done.path.mkdir(parents=True)
    record = {"run": done.name, "method": "zero_shot", "dataset": "synth_polyp", "seed": 0, "metrics": {"sm": 0.5}}
    done.write_metrics(record)
    running.path.mkdir(parents=True)
    # epoch 2 of 2, step 1 of 5: 6 of 10 steps
    (running.path / "progress.json").write_text(json.dumps({"epoch": 2, "epochs": 2, "step": 1, "steps": 5}))
    assert work.fraction() == pytest.approx((1.0 + 8.0 * 0.6) / 20.0)
