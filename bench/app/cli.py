"""Command line: ``python run_benchmark.py [COMMAND] [sweep=NAME] [key=value ...]``; COMMAND is one of :data:`COMMANDS`
(default ``run``)."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
import time
from typing import Any, Optional

from bench.config import ConfigError, row_label
from bench.contracts.dataset import dataset_tools
from bench.logs import setup_logging
from bench.phases import CLOCK, breakdown, process_age, summed
from bench.registry import UnknownNameError
from bench.runs.sweep import available_sweeps, load_config, resolve_sweep, run_count, sweep_runs
from bench.train import distributed

log = logging.getLogger("samfit")

COMMANDS = ("run", "list", "report", "status", "params", "prepare", "score", "download", "predict", "export", "plan")


class RunsFailed(Exception):
    """Some runs failed; the exception's text is the sweep summary (exit code 1)."""


class Interrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM; the text says how many runs are complete and how many resume (exit code
    130 after SIGINT, 143 after SIGTERM)."""

    def __init__(self, text: str, code: int = 130) -> None:
        super().__init__(text)
        self.code = code


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler of ``main``: the same stop as Ctrl-C (the launcher cancels its jobs)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def _registries():
    from bench.backbones import BACKBONES
    from bench.contracts import methods
    from bench.contracts.dataset import DATASETS

    return methods, BACKBONES, DATASETS


def validate_names(cfg, weights: bool = True, runs=None) -> None:
    """Fail before launching anything on an unknown method, dataset or backbone, bad method options, or a
    method that declares it cannot run on the student's (or, for a distiller, the teacher's) backbone family.

    ``runs``: the sweep's runs when the command resolved them (:func:`bench.runs.sweep.resolve_sweep`)."""
    methods, backbones, datasets = _registries()
    from bench.backbones import backbone_family

    for d in [*cfg.datasets, *cfg.test_sets, *(t for ts in cfg.test_sets.values() for t in ts), *cfg.eval.also_test]:
        datasets.get(d)
    from bench.contracts.sweep_steps import SWEEP_STEPS

    for step in cfg.after_runs:
        SWEEP_STEPS.get(step)
    backbones.get(cfg.backbone.name)
    if cfg.teacher.backbone:
        backbones.get(cfg.teacher.backbone)
    from bench.contracts.dataset import dataset_info
    from bench.contracts.weights import resolve_checkpoint
    from bench.runs.runner import teacher_config

    for run in sweep_runs(cfg, runs):
        spec, _, _ = methods.method_options(run.method, run.peft, run.distill, run.protocol)
        spec.peft_cls.check_backbone(run.backbone)  # before any weights are looked up (scratch: random on purpose)
        if weights:  # a full-size backbone without weights stops here, before any run starts
            resolve_checkpoint(run.backbone)
        if weights and spec.distiller_cls is not None:  # a distiller needs the teacher's weights too
            resolve_checkpoint(teacher_config(run))
        checks = [("peft method", spec.peft, spec.peft_cls.unsupported, "student", run.backbone.name)]
        if spec.distiller_cls is not None:
            teacher = run.teacher.backbone or run.backbone.name
            for role, backbone in (("student", run.backbone.name), ("teacher", teacher)):
                checks.append(("distiller", spec.distiller, spec.distiller_cls.unsupported, role, backbone))
        for extra in run.eval.also_test:
            problem = dataset_info(run.dataset).test_set_problem(dataset_info(extra))
            if problem is not None:
                raise ConfigError(f"eval.also_test: {run.dataset}'s runs cannot be tested on {extra}: {problem}")
        task = dataset_info(run.dataset).task
        if task in spec.peft_cls.unsupported_tasks:
            raise ConfigError(
                f"method {run.method!r} cannot run on {run.dataset!r} (a {task} dataset): "
                f"{spec.peft_cls.unsupported_tasks[task]}"
            )
        for kind, name, unsupported, role, backbone in checks:
            family = backbone_family(backbone)
            if family in unsupported:
                raise ConfigError(
                    f"method {run.method!r}: {kind} {name!r} cannot run with {role} backbone {backbone!r} "
                    f"({family} family): {unsupported[family]}"
                )


def cmd_list(args: list[str]) -> str:
    """``list``: the registered names and the sweeps; ``list method=NAME``: that method's options."""
    wanted = [a for a in args if a.startswith("method=")]
    if wanted:
        from bench.app.help import method_help

        return "\n\n".join(method_help(a.partition("=")[2]) for a in wanted)
    methods, backbones, datasets = _registries()
    from bench.config.protocols import protocols_in_order
    from bench.contracts.distill import DISTILLERS
    from bench.contracts.peft import PEFT_METHODS

    cfg = load_config(args)
    lines = [
        "methods (PEFT):     " + ", ".join(PEFT_METHODS.names()),
        "distillers:         "
        + ", ".join(DISTILLERS.names())
        + "   (use as <distiller>, <peft>+<distiller>, or chained: tinysam+rm)",
        f"datasets (data.root={cfg.data.root}):",
        *(f"  {name:<20} {state}" for name, state in dataset_tools().dataset_status(cfg.data.root).items()),
        "backbones:          " + ", ".join(backbones.names()),
        "protocols:          " + "; ".join(f"{p.name} = {p.summary}" for p in protocols_in_order()),
        "sweeps:",
    ]
    for name in available_sweeps():
        try:
            count = f"{run_count(load_config([f'sweep={name}'])):>4} runs"
        except ConfigError as err:  # one broken sweep file must not hide the others
            count = f"BROKEN: {err}"
        lines.append(f"  {name:<16} {count}")
    return "\n".join(lines)


def cmd_run(args: list[str]) -> str:
    from bench.hardware.accel import bf16_hint
    from bench.runs.launcher import launch
    from reports.report import build_report

    sweep = resolve_sweep(load_config(args))  # the one expansion of the sweep in this command
    cfg = sweep.cfg
    validate_names(cfg, runs=sweep.runs)
    t0 = time.time()
    try:
        outcomes = launch(cfg, runs=sweep.runs)  # the sweep steps (after_runs) run in there, on rank 0
    except KeyboardInterrupt as stop:
        code = 143 if isinstance(stop, Terminated) else 130
        raise Interrupted(interrupted_summary(cfg, sweep.runs), code) from None
    failed = [o for o in outcomes if o.error]
    busy = [o for o in outcomes if o.skipped]
    if cfg.launcher.name == "slurm":
        return f"submitted; follow with: python run_benchmark.py status sweep={cfg.sweep}"
    if distributed.env_world().rank != 0:  # under torchrun: rank 0 reports
        return ""
    CLOCK.take()
    with CLOCK.phase("report_tables"):  # aggregation; the report splits off its figures
        report = build_report(cfg, runs=sweep.runs)
    wall = process_age() or time.time() - t0  # from the interpreter's start: what the user waited
    summary = f"\n{report}\n"
    executed = [o.record["phases"] for o in outcomes if o.record and "phases" in o.record]
    if executed:
        jobs = min(cfg.launcher.max_parallel, len(executed)) if cfg.launcher.name == "local" else 1
        note = f"{len(executed)} runs summed, {jobs} parallel job(s)"
        summary += breakdown({**summed(executed), **CLOCK.take()}, wall, note) + "\n"
    summary += f"wall time {wall:.0f}s; {len(outcomes) - len(busy)} runs executed, {len(failed)} failed"
    hint = bf16_hint([o.run.train for o in outcomes])
    if hint:
        summary += "\n" + hint
    if busy:
        summary += f", {len(busy)} left to another launcher that is running them"
    if failed:
        summary += "\n" + "\n".join(
            f"  FAILED {o.run.method} / {o.run.dataset} / seed {o.run.seed}: {o.error}" for o in failed
        )
        raise RunsFailed(summary)
    return summary


def interrupted_summary(cfg, runs=None) -> str:
    """``interrupted; N runs complete, M resumable`` for the sweep of ``cfg`` (after Ctrl-C); ``runs``: its
    runs when the command resolved them."""
    from bench.runs.results import RunDir

    dirs = [RunDir(cfg.runs_dir, run) for run in sweep_runs(cfg, runs)]
    done = sum(rd.is_complete() for rd in dirs)
    resumable = sum(rd.path.is_dir() and not rd.is_complete() for rd in dirs)
    return f"interrupted; {done} runs complete, {resumable} resumable"


def cmd_score(args: list[str]) -> str:
    from bench.app.score import cmd_score as score

    return score(args)


def cmd_report(args: list[str]) -> str:
    from reports.report import build_report

    sweep = resolve_sweep(load_config(args))
    validate_names(sweep.cfg, weights=False, runs=sweep.runs)  # a report reads results: no weights needed
    return build_report(sweep.cfg, runs=sweep.runs)


def cmd_status(args: list[str]) -> str:
    from bench.runs.provenance import mixed_provenance
    from bench.runs.results import RunDir

    sweep = resolve_sweep(load_config(args))
    cfg = sweep.cfg
    lines = []
    records = []
    counts = {"done": 0, "running": 0, "failed": 0, "interrupted": 0, "missing": 0}
    for run in sweep.runs:
        rd = RunDir(cfg.runs_dir, run)
        state = rd.state()
        detail = ""
        if state == "corrupt":  # redone (the damaged file moved aside) by the next run
            detail = f"  {rd.metrics_problem()}"
        elif state == "failed":
            detail = f"  log: {rd.log_file}"
        elif state == "interrupted":
            detail = "  (resumes from its checkpoint)" if rd.checkpoint.is_file() else ""
        counts[state] = counts.get(state, 0) + 1
        lines.append(f"{state:<11} {run.dataset:<14} {row_label(run):<28} s{run.seed}  {rd.name}{detail}")
        if state == "done":
            records.append(rd.read_metrics())
    head = ", ".join(f"{v} {k}" for k, v in counts.items())
    warnings = [f"warning: {note}" for note in mixed_provenance(records)]
    return f"sweep {cfg.sweep}: {head}\n" + "\n".join(lines + warnings)


def cmd_params(args: list[str]) -> str:
    from reports.params import write_params

    _registries()
    cfg = load_config(args)
    return write_params(cfg)


def cmd_prepare(args: list[str]) -> str:
    """``prepare dataset=NAME [src=PATH]``: check a downloaded copy (read-only); problems exit with code 2."""
    return dataset_tools().prepare_command(args)


def cmd_download(args: list[str]) -> str:
    """``download backbone=NAME | dataset=NAME [url=URL] [sha256=HEX] [checkpoints_dir=DIR] [data.root=DIR]``."""
    from bench.config import BackboneConfig
    from bench.config.overrides import command_args
    from bench.use.download import download_backbone, download_dataset, listing

    pairs = command_args(args)
    backbone, dataset = pairs.pop("backbone", ""), pairs.pop("dataset", "")
    url, sha256 = pairs.pop("url", None) or None, pairs.pop("sha256", None) or None
    checkpoints_dir = pairs.pop("checkpoints_dir", None) or pairs.pop("backbone.checkpoints_dir", None)
    data_root = pairs.pop("data.root", None)
    if pairs:
        raise ConfigError(
            f"download: unknown key(s) {', '.join(sorted(pairs))}; "
            "valid: backbone, dataset, url, sha256, checkpoints_dir, data.root"
        )
    if bool(backbone) == bool(dataset):
        if not backbone and not dataset:
            return listing()
        raise ConfigError("download takes backbone=NAME or dataset=NAME, not both")
    if backbone:
        _registries()[1].get(backbone)
        return download_backbone(backbone, checkpoints_dir or BackboneConfig.checkpoints_dir, url, sha256)
    return download_dataset(dataset, data_root or load_config([]).data.root, url, sha256)


def cmd_predict(args: list[str]) -> str:
    from bench.use.predict import predict_command

    _registries()
    return predict_command(args)


def cmd_export(args: list[str]) -> str:
    from bench.use.export import export_command

    _registries()
    return export_command(args)


def cmd_plan(args: list[str]) -> str:
    """``plan sweep=NAME [gpu=h100|h200|a100|cpu] [mfu=X] [key=value ...]``: steps, FLOPs and GPU-hours, no run."""
    from bench.runs.plan import plan_command

    _registries()
    return plan_command(args)


def main(argv: Optional[list[str]] = None) -> int:
    """The command line; SIGTERM (kill, a cluster's stop) ends it as Ctrl-C does: jobs cancelled, one line."""
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ["SAMFIT_COMMAND"] = shlex.join(["python", "run_benchmark.py", *argv])  # provenance (jobs inherit it)
    if argv and argv[0] in ("-h", "--help", "help"):
        from bench.app.help import help_text

        sys.stdout.write(help_text() + "\n")
        return 0
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    setup_logging()
    handler = {
        "run": cmd_run,
        "list": cmd_list,
        "report": cmd_report,
        "status": cmd_status,
        "params": cmd_params,
        "prepare": cmd_prepare,
        "score": cmd_score,
        "download": cmd_download,
        "predict": cmd_predict,
        "export": cmd_export,
        "plan": cmd_plan,
    }[command]
    try:
        text = handler(argv)
    except (ConfigError, UnknownNameError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    except RunsFailed as failed:
        sys.stdout.write(str(failed).rstrip() + "\n")
        return 1
    except (Interrupted, KeyboardInterrupt) as stop:
        sys.stderr.write(f"{stop or 'interrupted'}\n")
        return stop.code if isinstance(stop, Interrupted) else 143 if isinstance(stop, Terminated) else 130
    except OSError as err:  # disk full, permissions, ...: one line naming the file, the traceback in debug
        log.debug("I/O error", exc_info=True)
        where = f"{err.filename}: " if err.filename else ""
        sys.stderr.write(f"error: {where}{err.strerror or err}\n")
        return 1
    sys.stdout.write(text.rstrip() + "\n")
    return 0
