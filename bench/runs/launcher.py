"""Run a sweep: expand it into runs, skip complete ones, execute the rest through submitit.

* ``launcher=local`` (default): each run in its own subprocess (submitit ``LocalExecutor``), at most
  ``launcher.max_parallel`` at once (submitit alone would start them all together).
* ``launcher=inline``: in this process, one after the other (tests, debugging).
* ``launcher=slurm``: one job array per sweep; ``slurm.*`` keys become submitit parameters. Jobs are
  :class:`RunJob` instances, so a timed-out or preempted job requeues itself and resumes from its
  last epoch checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import submitit
from tqdm import tqdm

from bench.config import BenchConfig, ConfigError, RunConfig, run_from_dict, to_dict
from bench.contracts.sweep_steps import run_sweep_steps
from bench.hardware.accel import check_execution
from bench.hardware.memory import check_accumulation
from bench.logs import setup_logging
from bench.phases import CLOCK, process_age
from bench.runs.progress import WorkBar, WorkPlan
from bench.runs.results import RunBusyError, RunDir
from bench.runs.sweep import sweep_runs
from bench.train import distributed

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


_IMPORTS_COUNTED = False  # whether this process's start-up time went into a run's phases (its first)


def execute_runs(runs: list[dict[str, Any]], runs_dir: str) -> list[dict[str, Any]]:
    """Execute runs one after the other; a failure is recorded and the next run goes on.

    Returns:
        One ``{"record": metrics record}``, ``{"error": message}`` or ``{"skipped": reason}`` (the run
        is being executed by another launcher) per run, in order.
    """
    from bench.runs.runner import execute_run

    global _IMPORTS_COUNTED
    if not _IMPORTS_COUNTED:  # the first runs of this process: interpreter start and imports until here
        _IMPORTS_COUNTED = True
        age = process_age()
        if age is not None:
            CLOCK.add("imports", age)
    results = []
    for data in runs:
        run = run_from_dict(data)
        try:
            results.append({"record": execute_run(run, runs_dir)})
        except RunBusyError as err:
            if distributed.world().world_size > 1:
                raise  # every rank must leave the run together
            log.warning("%s; skipped here", err)
            results.append({"skipped": str(err)})
        except Exception as err:  # one failed run must not stop the others; it is reported
            if distributed.world().world_size > 1:
                raise  # under DDP the ranks cannot go on separately: the job fails loudly
            message = f"{err.__class__.__name__}: {err}"
            log.error("run %s failed: %s", RunDir(runs_dir, run).name, message)
            results.append({"error": message})
    return results


class RunJob(submitit.helpers.Checkpointable):
    """A picklable job executing a group of runs; requeued by submitit on timeout or preemption.

    A requeued job calls the same runs again: complete ones are skipped, a partial one resumes from
    its last epoch checkpoint.
    """

    def __call__(
        self, runs: list[dict[str, Any]], runs_dir: str, threads: Optional[int] = None, ranks: int = 1
    ) -> list[dict[str, Any]]:
        setup_logging()
        if threads:
            import torch

            torch.set_num_threads(threads)
        return execute_group(runs, runs_dir, threads, ranks)


def execute_group(
    runs: list[dict[str, Any]], runs_dir: str, threads: Optional[int] = None, ranks: int = 1
) -> list[dict[str, Any]]:
    """Execute runs in this process, or each on ``ranks`` DDP processes: the N tasks of a Slurm job (submitit
    exports their torch.distributed environment) or N local processes from torch's elastic launcher."""
    if ranks > 1 and os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        submitit.helpers.TorchDistributedEnvironment().export(overwrite=True)
    if ranks > 1 and distributed.env_world().world_size == 1:
        return run_ranks(runs, runs_dir, ranks, threads)
    return execute_runs(runs, runs_dir)


@dataclass
class Outcome:
    run: RunConfig
    record: Optional[dict[str, Any]]
    error: Optional[str] = None
    skipped: Optional[str] = None


def pending_runs(cfg: BenchConfig, runs: Optional[list[RunConfig]] = None) -> tuple[list[RunConfig], list[RunConfig]]:
    """(all runs of the sweep, the ones without metrics.json); ``runs``: the sweep's runs when the command
    resolved them (:func:`bench.runs.sweep.resolve_sweep`), else resolved here."""
    runs = sweep_runs(cfg, runs)
    return runs, [r for r in runs if not RunDir(cfg.runs_dir, r).is_complete()]


def slurm_parameters(cfg: BenchConfig) -> dict[str, Any]:
    s = cfg.slurm
    params: dict[str, Any] = {
        "timeout_min": int(cfg.launcher.timeout_min),
        "gpus_per_node": s.gpus_per_node,
        "cpus_per_task": s.cpus_per_task,
        "mem_gb": s.mem_gb,
        "slurm_array_parallelism": s.array_parallelism,
        "name": f"samfit-{cfg.sweep}",
    }
    if cfg.launcher.gpus_per_run > 1:  # one task per rank, all on one node
        params["tasks_per_node"] = cfg.launcher.gpus_per_run
        if s.gpus_per_node:
            params["gpus_per_node"] = max(s.gpus_per_node, cfg.launcher.gpus_per_run)
    optional = {
        "slurm_partition": s.partition,
        "slurm_account": s.account,
        "slurm_qos": s.qos,
        "slurm_constraint": s.constraint,
    }
    params.update({k: v for k, v in optional.items() if v})
    if s.setup:
        params["slurm_setup"] = list(s.setup)
    if s.additional:
        params["slurm_additional_parameters"] = dict(s.additional)
    return params


def make_executor(cfg: BenchConfig, cluster: Optional[str] = None) -> submitit.Executor:
    folder = Path(cfg.launcher.folder or Path(cfg.runs_dir) / "_submitit")
    if cfg.launcher.name == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster or "slurm")
        executor.update_parameters(**slurm_parameters(cfg))
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster or "local")
    executor.update_parameters(timeout_min=int(cfg.launcher.timeout_min))
    return executor


def check_input_files(runs: list[RunConfig]) -> None:
    """Fail before launching when a file a run needs is missing: checkpoints of student and teacher, and
    the dataset folders under ``data.root`` (a quick look for the layout; the files are verified when a
    run reads them)."""
    from bench.contracts.dataset import dataset_tools

    roots = {run.data.root for run in runs}
    status = {root: dataset_tools().dataset_status(root) for root in roots}
    for run in runs:
        state = status[run.data.root].get(run.dataset, "")
        if state.startswith("missing"):
            raise ConfigError(
                f"dataset {run.dataset!r} is {state}; download it and check it with "
                f"'python run_benchmark.py prepare dataset={run.dataset} src=PATH'"
            )
        for key, value in (
            ("backbone.checkpoint", run.backbone.checkpoint),
            ("teacher.checkpoint", run.teacher.checkpoint),
        ):
            if value and not Path(value).is_file():
                raise ConfigError(f"{key}: checkpoint file not found: {value}")


def launch(cfg: BenchConfig, runs: Optional[list[RunConfig]] = None) -> list[Outcome]:
    """Execute the sweep's pending runs, then the sweep's steps (``after_runs``); returns one outcome per
    executed run. ``runs``: the sweep's runs when the command resolved them, else resolved here.

    The steps run once per launch, on rank 0 only (under torchrun every rank launches), before the command
    writes its report: with ``launcher=local`` or ``inline`` after the launched runs have ended (also when
    nothing was pending). ``launcher=slurm`` returns as soon as the jobs are submitted, so there they run
    before submitting and see the jobs that ended since the last ``run``: a Slurm sweep's steps for a job
    happen at the next ``run`` of the sweep after it ended."""
    from bench.contracts.methods import resolve_method

    runs, pending = pending_runs(cfg, runs)
    check_input_files(pending)
    for run in pending:  # a Slurm job checks its own node's devices: a login node often has no GPU
        check_execution(run.train, present=cfg.launcher.name != "slurm")
        distributed.check_batch(run.train.batch_size, cfg.launcher.gpus_per_run)
        distiller = resolve_method(run.method).distiller_cls  # options are checked when the run builds
        check_accumulation(run.train.grad_accumulation, run.train.batch_size, distiller, run.method)
    log.info("sweep %s: %d runs, %d complete, %d to run", cfg.sweep, len(runs), len(runs) - len(pending), len(pending))
    if cfg.launcher.name == "slurm":
        _sweep_steps(cfg, runs)
        if pending:
            _submit_slurm(cfg, pending)
        return []
    outcomes: list[Outcome] = []
    if pending:
        outcomes = _run_inline(cfg, pending) if cfg.launcher.name == "inline" else _run_local(cfg, pending)
    _sweep_steps(cfg, runs)
    return outcomes


def _sweep_steps(cfg: BenchConfig, runs: list[RunConfig]) -> None:
    """The sweep's ``after_runs`` steps (:mod:`bench.contracts.sweep_steps`), on rank 0 only."""
    if cfg.after_runs and distributed.env_world().rank == 0:
        run_sweep_steps(cfg, runs)


def _submit_slurm(cfg: BenchConfig, pending: list[RunConfig]) -> None:
    """Submit the pending runs as one Slurm job array and return (the jobs run on without this process)."""
    executor = make_executor(cfg)
    with executor.batch():
        jobs = [
            executor.submit(
                RunJob(),
                [to_dict(r) for r in group],
                cfg.runs_dir,
                cfg.launcher.threads_per_job,
                cfg.launcher.gpus_per_run,
            )
            for group in _groups(pending, cfg.launcher.runs_per_job)
        ]
    log.info(
        "submitted %d Slurm jobs (array %s); logs under %s",
        len(jobs),
        jobs[0].job_id.split("_")[0],
        cfg.launcher.folder or Path(cfg.runs_dir) / "_submitit",
    )


def _groups(runs: list[RunConfig], size: int) -> list[list[RunConfig]]:
    """Jobs of at most ``size`` runs, dealt out in turn (job g gets runs g, g + n, g + 2n ...).

    A sweep lists runs method by method, so consecutive chunks would give one job all the cheap
    zero-shot runs and another all the InfoSAM runs; dealing them out balances parallel jobs.
    """
    n = max(1, -(-len(runs) // size))
    return [runs[g::n] for g in range(n)]


def _outcomes(group: list[RunConfig], results: list[dict[str, Any]]) -> list[Outcome]:
    return [Outcome(run, res.get("record"), res.get("error"), res.get("skipped")) for run, res in zip(group, results)]


def _run_inline(cfg: BenchConfig, pending: list[RunConfig]) -> list[Outcome]:
    outcomes = []
    for run in tqdm(pending, desc=f"sweep {cfg.sweep}", unit="run", dynamic_ncols=True):
        results = execute_group([to_dict(run)], cfg.runs_dir, cfg.launcher.threads_per_job, cfg.launcher.gpus_per_run)
        outcomes += _outcomes([run], results)
    return outcomes


def _progress_text(dirs: list[RunDir]) -> str:
    for rd in dirs:
        if rd.is_complete():
            continue
        try:
            row = json.loads((rd.path / "progress.json").read_text())
        except (OSError, ValueError):
            return rd.name
        return f"{rd.name} ep {row['epoch']}/{row['epochs']} step {row['step']}/{row['steps']} loss {row['loss']:.3f}"
    return ""


def job_failure(err: Exception, job: Any) -> str:
    """Why a local job ended without a result, in one line."""
    died = isinstance(err, submitit.core.utils.UncompletedJobError) and not isinstance(
        err, submitit.core.utils.FailedJobError
    )
    if died:  # no result pickle: the process was killed (kill -9, the OOM killer) or crashed
        code = getattr(getattr(job, "_process", None), "returncode", None)
        how = f"by {signal.Signals(-code).name}" if isinstance(code, int) and code < 0 else "by a signal"
        return (
            f"job killed {how} (e.g. kill -9 or the out-of-memory killer) before it finished; "
            "its runs resume from their last epoch checkpoint on the next launch"
        )
    text = str(err).strip()
    return text.splitlines()[-1] if text else repr(err)


@contextlib.contextmanager
def _child_stderr(path: Path):
    """Point this process's stderr (fd 2) at ``path`` while a job is submitted, so the job controller that
    submitit forks inherits the file instead of the terminal. Stopped by Ctrl-C or by a cancel (SIGINT),
    that controller prints a KeyboardInterrupt traceback of its own; it belongs in its log, not on the
    user's terminal under our one-line summary. The task processes write their own log files anyway."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("ab") as log_file:
            os.dup2(log_file.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _run_local(cfg: BenchConfig, pending: list[RunConfig]) -> list[Outcome]:
    # job processes unpickle bench.* by name: make the repository importable from any working directory
    paths = [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    executor = make_executor(cfg)
    queue = _groups(pending, cfg.launcher.runs_per_job)
    running: list[tuple[list[RunConfig], list[RunDir], submitit.Job]] = []
    outcomes: list[Outcome] = []
    work = WorkPlan(pending, [RunDir(cfg.runs_dir, r) for r in pending])  # the bar's weights: planned work
    bar = WorkBar(f"sweep {cfg.sweep}")
    started = False
    try:
        while queue or running:
            while queue and len(running) < cfg.launcher.max_parallel:
                group = queue.pop(0)
                with _child_stderr(Path(executor.folder) / "controllers.err"):
                    job = executor.submit(
                        RunJob(),
                        [to_dict(r) for r in group],
                        cfg.runs_dir,
                        cfg.launcher.threads_per_job,
                        cfg.launcher.gpus_per_run,
                    )
                running.append((group, [RunDir(cfg.runs_dir, r) for r in group], job))
            if not started:  # counted beside the first jobs, not before them
                work.start()
                started = True
            time.sleep(1.0)
            for entry in list(running):
                group, _, job = entry
                if not job.done():
                    continue
                running.remove(entry)
                try:
                    outcomes += _outcomes(group, job.result())
                except Exception as err:  # the job process itself died; submitit re-raises its error
                    message = job_failure(err, job)
                    log.error("job of %d run(s) failed: %s (log: %s)", len(group), message, job.paths.stderr)
                    outcomes += [Outcome(run, None, message) for run in group]
            finished = len(outcomes) + sum(rd.is_complete() for _, dirs, _ in running for rd in dirs)
            bar.show(
                work.fraction(), f"{finished}/{len(pending)} runs", _progress_text(running[0][1]) if running else ""
            )
    finally:
        bar.close()
        for _, _, job in running:
            job.cancel(check=False)
    return outcomes


def _rank_entry(runs: list[dict[str, Any]], runs_dir: str, threads: Optional[int]) -> list[dict[str, Any]]:
    import torch
    import torch.distributed as dist

    setup_logging()
    if threads:
        torch.set_num_threads(threads)
    try:
        return execute_runs(runs, runs_dir)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(
    runs: list[dict[str, Any]], runs_dir: str, ranks: int, threads: Optional[int] = None
) -> list[dict[str, Any]]:
    """Execute ``runs`` on ``ranks`` local processes started by torch's elastic launcher (rank 0's results).

    A rank that dies or fails stops the others and raises ``ChildFailedError`` (the run resumes from its
    last epoch checkpoint on the next launch).
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=ranks,
        run_id=f"samfit-{os.getpid()}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.5,
    )
    results = elastic_launch(config, _rank_entry)(runs, runs_dir, threads)
    return results[0]
