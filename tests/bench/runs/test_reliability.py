"""Faults: a run killed with SIGKILL or preempted (Slurm-style requeue) resumes to the uninterrupted result;
two launchers never execute the same run; a full disk leaves no partial result; `status` tells each state."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import bench.fileio
import bench.runs.runner
from bench.app.cli import cmd_status
from bench.config import to_dict
from bench.runs.launcher import execute_runs, launch, make_executor
from bench.runs.results import LOCK_FILE, METRICS_FILE, RunBusyError, RunDir
from bench.runs.runner import execute_run
from bench.runs.sweep import load_config, run_configs
from tests.tiny_runs import REPO, metric_values, single_run, sweep, sweep_args

# A run long enough to be caught mid-epoch: 4 steps per epoch, each slowed to >= 0.15 s in the child.
LONG = ("train.epochs=4", "data.synth.train_size=16", "train.batch_size=4")

CHILD = """
import sys, time, torch
torch.set_num_threads(1)
import bench.train.trainer
from bench.runs.sweep import load_config, run_configs
from bench.runs.runner import execute_run

real = bench.train.trainer.structure_loss
def slow(*args, **kwargs):
    time.sleep(0.15)
    return real(*args, **kwargs)
bench.train.trainer.structure_loss = slow
cfg = load_config(sys.argv[1:])
execute_run(run_configs(cfg)[0], cfg.runs_dir)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _progress(rd: RunDir) -> dict:
    try:
        return json.loads((rd.path / "progress.json").read_text())
    except (OSError, ValueError):
        return {}


def _wait_for(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_mid_epoch_then_relaunch_gives_the_uninterrupted_metrics(tmp_path):
    reference_cfg = sweep(tmp_path, *LONG, runs="reference")
    run = single_run(reference_cfg)
    reference = execute_run(run, reference_cfg.runs_dir)

    killed_cfg = sweep(tmp_path, *LONG, runs="killed")
    assert single_run(killed_cfg) == run
    rd = RunDir(killed_cfg.runs_dir, run)
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), *sweep_args(tmp_path, *LONG, runs="killed")], env=_env()
    )
    try:
        # mid-epoch 2: its first step is logged (log_every), 3 steps of >= 0.15 s remain
        _wait_for(lambda: _progress(rd).get("epoch") == 2, what="epoch 2 step 1")
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    assert not rd.is_complete() and rd.checkpoint.is_file() and not rd.is_running()
    assert cmd_status(sweep_args(tmp_path, *LONG, runs="killed")).splitlines()[1].startswith("interrupted")

    record = execute_runs([to_dict(run)], killed_cfg.runs_dir)[0]["record"]
    assert record["metrics"] == reference["metrics"]
    assert "resumed from" in rd.log_file.read_text()
    ref_dir = RunDir(reference_cfg.runs_dir, run).path
    assert (rd.path / "train_log.csv").read_text() == (ref_dir / "train_log.csv").read_text()
    assert metric_values(rd.path) == metric_values(ref_dir)


def _task_pids(controller_pid: int) -> list[int]:
    """Child processes of submitit's local controller (the job's task)."""
    children = Path(f"/proc/{controller_pid}/task/{controller_pid}/children")
    return [int(p) for p in children.read_text().split()] if children.is_file() else []


@pytest.mark.slow  # ~1-2 min: CI runs it in its own pass (.ci/run), the README command skips it
def test_preempted_job_requeues_and_resumes_without_rerunning_complete_runs(tmp_path, monkeypatch):
    """submitit's requeue path, as on Slurm: the preemption signal (USR2) reaches the job, the job
    checkpoints and requeues itself, the new attempt skips the finished run and resumes the other."""
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = (*LONG, "launcher.name=local", "launcher.runs_per_job=2", "seeds=[0,1]", "launcher.timeout_min=10")
    cfg = sweep(tmp_path, *args)
    first, second = run_configs(cfg)
    # slow steps in the job process: the job's callable is RunJob, so patch through a sitecustomize
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import time, bench.train.trainer as t\n"
        "_real = t.structure_loss\n"
        "def _slow(*a, **k):\n    time.sleep(0.15)\n    return _real(*a, **k)\n"
        "t.structure_loss = _slow\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), _env()["PYTHONPATH"]]))
    from bench.runs.launcher import RunJob

    executor = make_executor(cfg)
    job = executor.submit(RunJob(), [to_dict(first), to_dict(second)], cfg.runs_dir)
    rd1, rd2 = RunDir(cfg.runs_dir, first), RunDir(cfg.runs_dir, second)
    _wait_for(lambda: rd1.is_complete(), what="first run complete")
    done_at = (rd1.path / METRICS_FILE).stat().st_mtime_ns
    _wait_for(lambda: _progress(rd2).get("epoch") == 2, what="second run in epoch 2")
    tasks = _task_pids(job._process.pid)
    assert tasks, "no task process found under the submitit controller"
    for pid in tasks:
        os.kill(pid, signal.SIGUSR2)  # what Slurm sends before a timeout or a preemption
    result = job.result()
    assert [("record" in r) for r in result] == [True, True]
    assert (rd1.path / METRICS_FILE).stat().st_mtime_ns == done_at  # never re-run
    assert "resumed from" in rd2.log_file.read_text()
    log_text = Path(job.paths.stdout).read_text() + Path(job.paths.stderr).read_text()
    assert "complete, skipped" in log_text

    reference_cfg = sweep(tmp_path, *LONG, "seeds=[1]", runs="reference")
    assert single_run(reference_cfg) == second
    reference = execute_run(second, reference_cfg.runs_dir)
    assert metric_values(rd2.path) == reference["metrics"]


def test_a_locked_run_is_left_to_its_owner(tmp_path):
    cfg = sweep(tmp_path, "train.epochs=1")
    run = single_run(cfg)
    rd = RunDir(cfg.runs_dir, run)
    assert not rd.is_running()
    with rd.lock():
        assert rd.is_running()
        with pytest.raises(RunBusyError, match=rd.name):
            execute_run(run, cfg.runs_dir)
        outcomes = launch(cfg)
        assert len(outcomes) == 1 and outcomes[0].skipped and outcomes[0].error is None
        assert cmd_status(sweep_args(tmp_path, "train.epochs=1")).splitlines()[1].startswith("running")
    assert not rd.is_running() and (rd.path / LOCK_FILE).is_file()
    assert not rd.is_complete()
    execute_run(run, cfg.runs_dir)  # the lock is free again
    assert rd.is_complete()


def test_two_launchers_on_one_sweep_execute_each_run_once(tmp_path, monkeypatch):
    cfg = sweep(tmp_path, "train.epochs=1", "seeds=[0,1,2]")
    calls: list[str] = []
    real_train = bench.runs.runner.train

    def counting_train(parts, data, train_cfg, seed, *args, **kwargs):
        calls.append(kwargs.get("desc", ""))
        time.sleep(0.3)  # keep the run busy while the other launcher reaches it
        return real_train(parts, data, train_cfg, seed, *args, **kwargs)

    monkeypatch.setattr(bench.runs.runner, "train", counting_train)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(launch(cfg))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == sorted({c for c in calls}) and len(calls) == 3  # each run trained exactly once
    assert all(RunDir(cfg.runs_dir, r).is_complete() for r in run_configs(cfg))
    assert not any(o.error for outcomes in results for o in outcomes)


def test_disk_full_while_writing_results_leaves_no_partial_file(tmp_path, monkeypatch):
    cfg = sweep(tmp_path, "train.epochs=1")
    run = single_run(cfg)
    rd = RunDir(cfg.runs_dir, run)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bench.fileio.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        execute_run(run, cfg.runs_dir)
    monkeypatch.undo()
    leftovers = [p.name for p in rd.path.iterdir() if p.suffix == ".tmp" or p.name == METRICS_FILE]
    assert leftovers == []
    record = execute_run(run, cfg.runs_dir)  # space is back: the run completes
    assert record["status"] == "complete" and rd.is_complete()


def test_status_names_each_state_and_the_log_of_each_failure(tmp_path, monkeypatch):
    args = sweep_args(tmp_path, "methods=[zero_shot,adapter]", "seeds=[0,1]", "train.epochs=1")
    cfg = load_config(args)
    zero0, zero1, adapter0, adapter1 = sorted(run_configs(cfg), key=lambda r: (r.method != "zero_shot", r.seed))
    execute_run(zero0, cfg.runs_dir)

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(bench.runs.runner, "train", broken)
    with pytest.raises(RuntimeError):
        execute_run(adapter0, cfg.runs_dir)
    RunDir(cfg.runs_dir, adapter1).path.mkdir(parents=True)
    text = cmd_status(args)
    assert text.splitlines()[0].endswith("1 done, 0 running, 1 failed, 1 interrupted, 1 missing")
    failed = next(line for line in text.splitlines() if line.startswith("failed"))
    log_path = Path(failed.split("log: ")[1])
    assert log_path == RunDir(cfg.runs_dir, adapter0).log_file
    assert "RuntimeError: boom" in log_path.read_text()  # the traceback is in the run's log
