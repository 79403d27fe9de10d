"""launcher=slurm on a real one-node Slurm cluster (tests/launch/slurm_cluster.py): the job array, a 2-task DDP run,
preemption (USR2) -> requeue -> resume, a time-out -> requeue -> resume, and `status` while jobs run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bench.app.cli import cmd_status
from bench.runs.launcher import launch
from bench.runs.results import RunDir
from bench.runs.runner import execute_run
from bench.runs.sweep import run_configs
from tests.bench.runs.test_reliability import LONG, _progress
from tests.tiny_runs import REPO, metric_values, sweep, sweep_args

from .slurm_cluster import SlurmCluster

# One CPU and no GPU per job on the 2-CPU node; single-threaded torch in the job.
SLURM = (
    "launcher.name=slurm",
    "slurm.gpus_per_node=0",
    "slurm.cpus_per_task=1",
    "slurm.mem_gb=1",
    "launcher.threads_per_job=1",
)

# Slows every training step of a job's first attempt (Slurm sets SLURM_RESTART_COUNT once a job is requeued),
# so the test can catch it mid-run; a requeued attempt runs at full speed.
SITE = """\
import os, time
if os.environ.get("SLURM_JOB_ID") and not int(os.environ.get("SLURM_RESTART_COUNT", "0")):
    import bench.train.trainer as t
    _real = t.structure_loss
    def _slow(*a, **k):
        time.sleep({delay})
        return _real(*a, **k)
    t.structure_loss = _slow
"""


def _job_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delay: float) -> None:
    """sbatch exports the submitting environment: the job imports bench and the slow-step patch from it."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITE.format(delay=delay))
    paths = [str(site), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _wait(cluster: SlurmCluster, predicate, timeout: float, what: str, release: bool = False) -> None:
    """Poll ``predicate``; with ``release``, start requeued jobs at once instead of after Slurm's delay."""
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if release:
            cluster.release_requeued()
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; queue: {cluster.jobs()}")


def _submitit_logs(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(folder.glob("*.out")) + sorted(folder.glob("*.err")))


def test_sweep_is_one_job_array_and_status_tells_running_runs(slurm_cluster, tmp_path, monkeypatch):
    _job_env(tmp_path, monkeypatch, delay=0.3)
    args = sweep_args(tmp_path, *LONG, *SLURM, "seeds=[0,1]", "launcher.timeout_min=10")
    cfg = sweep(tmp_path, *LONG, *SLURM, "seeds=[0,1]", "launcher.timeout_min=10")
    assert launch(cfg) == []  # submitted, not waited for
    jobs = slurm_cluster.jobs()
    array = {job.split("_")[0] for job in jobs}
    assert len(array) == 1 and sorted(job.split("_")[1] for job in jobs) == ["0", "1"], jobs
    dirs = [RunDir(cfg.runs_dir, run) for run in run_configs(cfg)]
    _wait(slurm_cluster, lambda: any(rd.is_running() for rd in dirs), 120, "a run holding its lock")
    head, *lines = cmd_status(args).splitlines()
    assert any(line.startswith("running") for line in lines), head
    _wait(slurm_cluster, lambda: all(rd.is_complete() for rd in dirs), 240, "both runs complete")
    assert cmd_status(args).splitlines()[0].endswith("2 done, 0 running, 0 failed, 0 interrupted, 0 missing")
    _wait(slurm_cluster, lambda: not slurm_cluster.jobs(), 60, "the array to leave the queue")
    assert launch(cfg) == []  # nothing pending: nothing submitted
    assert not slurm_cluster.jobs()


def _reference(tmp_path: Path, *args: str) -> tuple[dict, Path]:
    cfg = sweep(tmp_path, *args, runs="reference")
    (run,) = run_configs(cfg)
    execute_run(run, cfg.runs_dir)
    return metric_values(RunDir(cfg.runs_dir, run).path), RunDir(cfg.runs_dir, run).path


def test_usr2_preemption_requeues_and_resumes_to_the_uninterrupted_metrics(slurm_cluster, tmp_path, monkeypatch):
    _job_env(tmp_path, monkeypatch, delay=0.3)
    args = (*LONG, "train.epochs=6", *SLURM, "launcher.timeout_min=60")  # far from the limit: a preemption
    cfg = sweep(tmp_path, *args)
    (run,) = run_configs(cfg)
    rd = RunDir(cfg.runs_dir, run)
    launch(cfg)
    (job,) = slurm_cluster.jobs()
    _wait(slurm_cluster, lambda: _progress(rd).get("epoch", 0) >= 3, 180, "epoch 3 running")
    slurm_cluster.run("scancel", "-s", "USR2", job.split("_")[0])
    _wait(slurm_cluster, rd.is_complete, 240, "the requeued run to complete", release=True)
    logs = _submitit_logs(Path(cfg.launcher.folder))
    assert "this job is preempted" in logs and "Requeued job" in logs
    text = rd.log_file.read_text()
    assert "resumed from" in text and "after epoch 6" not in text  # resumed mid-run, not re-done
    reference, ref_dir = _reference(tmp_path, *LONG, "train.epochs=6")
    assert metric_values(rd.path) == reference
    assert (rd.path / "train_log.csv").read_text() == (ref_dir / "train_log.csv").read_text()


@pytest.mark.slow  # timing-dependent: slurmctld checks limits every 30 s and the job must have imported by then;
# it timed out once in a full-suite run on a machine at load 6-9, so it runs outside the CI gate (pytest -m slow)
def test_time_limit_signal_requeues_and_resumes(slurm_cluster, tmp_path, monkeypatch):
    """A 2-minute limit: Slurm sends USR2 90 s before it (submitit's --signal=USR2@90), i.e. 30-60 s into the
    job given slurmctld's 30-s check period (a 1-minute limit would signal the job while Python still imports,
    before submitit's handler exists); submitit counts it as a time-out, requeues, and the run resumes."""
    # the first attempt: 8 s epochs, 32 steps in all, checkpoints before the signal and outlasts it
    _job_env(tmp_path, monkeypatch, delay=2.0)
    args = (*LONG, "train.epochs=8", *SLURM, "launcher.timeout_min=2")
    cfg = sweep(tmp_path, *args)
    (run,) = run_configs(cfg)
    rd = RunDir(cfg.runs_dir, run)
    launch(cfg)
    _wait(slurm_cluster, rd.is_complete, 300, "the run to complete after its time-out", release=True)
    logs = _submitit_logs(Path(cfg.launcher.folder))
    assert "this job is timed-out" in logs
    assert "Requeued job" in logs and "resumed from" in rd.log_file.read_text()
    reference, _ = _reference(tmp_path, *LONG, "train.epochs=8")
    assert metric_values(rd.path) == reference


def test_one_run_on_two_slurm_tasks_trains_as_one_process(slurm_cluster, tmp_path, monkeypatch):
    """launcher.gpus_per_run=2 on Slurm: one job of 2 tasks (gloo here), submitit's distributed environment."""
    from tests.bench.train.test_distributed import ARGS, _close, _log

    _job_env(tmp_path, monkeypatch, delay=0.0)
    cfg = sweep(tmp_path, *ARGS, *SLURM, "launcher.gpus_per_run=2", "launcher.timeout_min=10")
    (run,) = run_configs(cfg)
    rd = RunDir(cfg.runs_dir, run)
    launch(cfg)
    (job,) = slurm_cluster.jobs()
    assert "#SBATCH --ntasks-per-node=2" in next(Path(cfg.launcher.folder).glob("*_submission.sh")).read_text()
    _wait(slurm_cluster, rd.is_complete, 300, "the 2-task run to complete")
    record = json.loads((rd.path / "metrics.json").read_text())
    assert record["world_size"] == 2
    single = sweep(tmp_path, *ARGS, runs="single")
    execute_run(run, single.runs_dir)
    one = RunDir(single.runs_dir, run).path
    for r1, r2 in zip(_log(one), _log(rd.path), strict=True):
        assert all(_close(r1[k], r2[k]) for k in r1), (r1, r2)
    reference = json.loads((one / "metrics.json").read_text())["metrics"]
    assert all(_close(v, record["metrics"][k]) for k, v in reference.items())
