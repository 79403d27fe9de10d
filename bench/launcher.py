"""Run a sweep: expand it into runs, skip complete ones, execute the rest through submitit.

* ``launcher=local`` (default): each run in its own subprocess (submitit ``LocalExecutor``), at most
  ``launcher.max_parallel`` at once (submitit alone would start them all together).
* ``launcher=inline``: in this process, one after the other (tests, debugging).
* ``launcher=slurm``: one job array per sweep; ``slurm.*`` keys become submitit parameters. Jobs are
  :class:`RunJob` instances, so a timed-out or preempted job requeues itself and resumes from its
  last epoch checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import submitit
from tqdm import tqdm

from bench.config import BenchConfig, ConfigError, RunConfig, run_configs, run_from_dict, to_dict
from bench.results import RunDir

log = logging.getLogger(__name__)

LAUNCHERS = ("local", "inline", "slurm")


class RunJob(submitit.helpers.Checkpointable):
    """A picklable job executing one run; requeued by submitit on timeout or preemption."""

    def __call__(self, run: dict[str, Any], runs_dir: str) -> dict[str, Any]:
        from bench.cli import setup_logging
        from bench.runner import execute_run

        setup_logging()
        return execute_run(run_from_dict(run), runs_dir)


@dataclass
class Outcome:
    run: RunConfig
    record: Optional[dict[str, Any]]
    error: Optional[str] = None


def pending_runs(cfg: BenchConfig) -> tuple[list[RunConfig], list[RunConfig]]:
    """(all runs of the sweep, the ones without metrics.json)."""
    runs = run_configs(cfg)
    return runs, [r for r in runs if not RunDir(cfg.runs_dir, r).is_complete()]


def slurm_parameters(cfg: BenchConfig) -> dict[str, Any]:
    s = cfg.slurm
    params: dict[str, Any] = {
        "timeout_min": int(cfg.launcher.timeout_min), "gpus_per_node": s.gpus_per_node,
        "cpus_per_task": s.cpus_per_task, "mem_gb": s.mem_gb, "slurm_array_parallelism": s.array_parallelism,
        "name": f"samfit-{cfg.sweep}",
    }
    optional = {"slurm_partition": s.partition, "slurm_account": s.account, "slurm_qos": s.qos,
                "slurm_constraint": s.constraint}
    params.update({k: v for k, v in optional.items() if v})
    if s.setup:
        params["slurm_setup"] = list(s.setup)
    if s.additional:
        params["slurm_additional_parameters"] = dict(s.additional)
    return params


def make_executor(cfg: BenchConfig, cluster: Optional[str] = None) -> submitit.Executor:
    folder = Path(cfg.launcher.folder) / "%j"
    if cfg.launcher.name == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster or "slurm")
        executor.update_parameters(**slurm_parameters(cfg))
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster or "local")
    executor.update_parameters(timeout_min=int(cfg.launcher.timeout_min))
    return executor


def launch(cfg: BenchConfig) -> list[Outcome]:
    """Execute the sweep's pending runs; returns one outcome per executed run."""
    if cfg.launcher.name not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {cfg.launcher.name!r}; valid choices: {', '.join(LAUNCHERS)}")
    if cfg.launcher.max_parallel < 1:
        raise ConfigError("launcher.max_parallel must be >= 1")
    runs, pending = pending_runs(cfg)
    log.info("sweep %s: %d runs, %d complete, %d to run", cfg.sweep, len(runs), len(runs) - len(pending), len(pending))
    if not pending:
        return []
    if cfg.launcher.name == "inline":
        return _run_inline(cfg, pending)
    if cfg.launcher.name == "slurm":
        executor = make_executor(cfg)
        with executor.batch():
            jobs = [executor.submit(RunJob(), to_dict(r), cfg.runs_dir) for r in pending]
        log.info("submitted %d Slurm jobs (array %s); logs under %s", len(jobs), jobs[0].job_id.split("_")[0],
                 cfg.launcher.folder)
        return []
    return _run_local(cfg, pending)


def _run_inline(cfg: BenchConfig, pending: list[RunConfig]) -> list[Outcome]:
    from bench.runner import execute_run

    outcomes = []
    for run in tqdm(pending, desc=f"sweep {cfg.sweep}", unit="run", dynamic_ncols=True):
        try:
            outcomes.append(Outcome(run, execute_run(run, cfg.runs_dir)))
        except Exception as err:  # one failed run must not stop the sweep; it is reported
            log.error("run %s failed: %s: %s", RunDir(cfg.runs_dir, run).name, err.__class__.__name__, err)
            outcomes.append(Outcome(run, None, f"{err.__class__.__name__}: {err}"))
    return outcomes


def _progress_text(rd: RunDir) -> str:
    try:
        row = json.loads((rd.path / "progress.json").read_text())
    except (OSError, ValueError):
        return rd.name
    return f"{rd.name} ep {row['epoch']}/{row['epochs']} step {row['step']}/{row['steps']} loss {row['loss']:.3f}"


def _run_local(cfg: BenchConfig, pending: list[RunConfig]) -> list[Outcome]:
    executor = make_executor(cfg)
    queue = list(pending)
    running: list[tuple[RunConfig, submitit.Job]] = []
    outcomes: list[Outcome] = []
    bar = tqdm(total=len(pending), desc=f"sweep {cfg.sweep}", unit="run", dynamic_ncols=True)
    try:
        while queue or running:
            while queue and len(running) < cfg.launcher.max_parallel:
                run = queue.pop(0)
                running.append((run, executor.submit(RunJob(), to_dict(run), cfg.runs_dir)))
            time.sleep(0.5)
            for run, job in list(running):
                if not job.done():
                    continue
                running.remove((run, job))
                bar.update(1)
                try:
                    outcomes.append(Outcome(run, job.result()))
                except Exception as err:  # submitit re-raises the job's error with its traceback
                    message = str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)
                    log.error("run %s failed: %s (log: %s)", RunDir(cfg.runs_dir, run).name, message,
                              job.paths.stderr)
                    outcomes.append(Outcome(run, None, message))
            if running:
                bar.set_postfix_str(_progress_text(RunDir(cfg.runs_dir, running[0][0])), refresh=True)
    finally:
        bar.close()
        for _, job in running:
            job.cancel(check=False)
    return outcomes
