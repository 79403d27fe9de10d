"""The sweep's progress bar weighs runs by their planned work (bench/runs/progress.py)."""

from __future__ import annotations

import io
import json

import pytest

from bench.runs.progress import Weight, WorkBar, WorkPlan, planned_weights
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
    assert work.fraction() is None  # not planned yet: the bar says so instead of counting runs
    work.weights = [Weight(0, 0.0, 1.0), Weight(10, 8.0, 1.0), Weight(10, 9.0, 1.0)]
    done, running = dirs[0], dirs[1]
    done.path.mkdir(parents=True)
    record = {"run": done.name, "method": "zero_shot", "dataset": "synth_polyp", "seed": 0, "metrics": {"sm": 0.5}}
    done.write_metrics(record)
    running.path.mkdir(parents=True)
    # epoch 2 of 2, step 1 of 5: 6 of 10 steps
    (running.path / "progress.json").write_text(json.dumps({"epoch": 2, "epochs": 2, "step": 1, "steps": 5}))
    assert work.fraction() == pytest.approx((1.0 + 8.0 * 0.6) / 20.0)


def test_a_failed_plan_counts_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = run_configs(sweep(tmp_path, "methods=[zero_shot,adapter]"))
    dirs = [RunDir(tmp_path / "runs", r) for r in runs]
    work = WorkPlan(runs, dirs)
    monkeypatch.setattr("bench.runs.progress.planned_weights", lambda runs: 1 / 0)
    work._count()
    assert work.failed and work.weights is None
    dirs[0].path.mkdir(parents=True)
    record = {"run": dirs[0].name, "method": "zero_shot", "dataset": "synth_polyp", "seed": 0, "metrics": {"sm": 0.5}}
    dirs[0].write_metrics(record)
    assert work.fraction() == 0.5


def test_the_plan_count_runs_on_one_thread_and_leaves_the_jobs_cores(tmp_path, monkeypatch):
    """The controller's OpenMP workers spin on the cores the jobs train on (the demo 178 -> 172 s with one)."""
    import torch

    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    seen = []
    monkeypatch.setattr("bench.runs.progress.planned_weights", lambda runs: seen.append(torch.get_num_threads()) or [])
    try:
        work = WorkPlan([], [])
        work.start()
        work._thread.join(timeout=60)
        assert seen == [1] and work.weights == []
        assert torch.get_num_threads() == before  # the controller's setting is back after the count
    finally:
        torch.set_num_threads(before)


def test_the_bar_waits_for_the_plan_then_extrapolates_work_done_since(monkeypatch):
    clock = [100.0]
    out = io.StringIO()
    bar = WorkBar("sweep t", file=out, mininterval=0)
    monkeypatch.setattr(bar.bar, "_time", lambda: clock[0])
    bar.bar.start_t = bar.bar.last_print_t = clock[0]
    clock[0] = 130.0  # 30 s of start-up, then the plan: 20 % of its work is done already
    bar.show(None, "2/16 runs")
    assert bar.bar.n == 0 and "(planning the work)" in out.getvalue().splitlines()[-1].split("\r")[-1]
    bar.show(0.2, "4/16 runs")
    clock[0] = 140.0  # 10 s later, 30 %: 10 % in 10 s, 70 % left = 70 s (not 30 % in 40 s: 93 s)
    bar.show(0.3, "5/16 runs", "run ep 1/7")
    last = out.getvalue().split("\r")[-1]
    assert "30% of the planned work" in last and "<01:10]" in last and "5/16 runs; run ep 1/7" in last
    assert "planning" not in last
    bar.close()
