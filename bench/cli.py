"""Command line: ``python run_benchmark.py [run|list|report|status] [sweep=NAME] [key=value ...]``."""

from __future__ import annotations

import logging
import sys
import time
from typing import Optional

from bench.config import ConfigError, available_sweeps, load_config, run_configs
from bench.registry import UnknownNameError

log = logging.getLogger("samfit")

COMMANDS = ("run", "list", "report", "status", "params")


def setup_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _registries():
    import datasets  # noqa: F401  (registration)
    import methods
    from bench.backbones import BACKBONES
    from datasets._base import DATASETS

    return methods, BACKBONES, DATASETS


def validate_names(cfg) -> None:
    """Fail before launching anything on an unknown method, dataset or backbone, or bad method options."""
    methods, backbones, datasets = _registries()
    for d in cfg.datasets:
        datasets.get(d)
    backbones.get(cfg.backbone.name)
    if cfg.teacher.backbone:
        backbones.get(cfg.teacher.backbone)
    for run in run_configs(cfg):
        methods.method_options(run.method, run.peft, run.distill)


def cmd_list(args: list[str]) -> str:
    methods, backbones, datasets = _registries()
    from methods.distill._base import DISTILLERS
    from methods.peft._base import PEFT_METHODS

    lines = [
        "methods (PEFT):     " + ", ".join(PEFT_METHODS.names()),
        "distillers:         " + ", ".join(DISTILLERS.names()) + "   (use as <distiller> or <peft>+<distiller>)",
        "datasets:           " + ", ".join(datasets.names()),
        "backbones:          " + ", ".join(backbones.names()),
        "sweeps:",
    ]
    for name in available_sweeps():
        cfg = load_config([f"sweep={name}"])
        lines.append(f"  {name:<16} {len(run_configs(cfg)):>4} runs")
    return "\n".join(lines)


def cmd_run(args: list[str]) -> str:
    from bench.launcher import launch
    from reports.report import build_report

    cfg = load_config(args)
    validate_names(cfg)
    t0 = time.time()
    outcomes = launch(cfg)
    failed = [o for o in outcomes if o.error]
    if cfg.launcher.name == "slurm":
        return f"submitted; follow with: python run_benchmark.py status sweep={cfg.sweep}"
    report = build_report(cfg)
    summary = f"\n{report}\nwall time {time.time() - t0:.0f}s; {len(outcomes)} runs executed, {len(failed)} failed"
    if failed:
        summary += "\n" + "\n".join(
            f"  FAILED {o.run.method} / {o.run.dataset} / seed {o.run.seed}: {o.error}" for o in failed
        )
    return summary


def cmd_report(args: list[str]) -> str:
    from reports.report import build_report

    cfg = load_config(args)
    validate_names(cfg)
    return build_report(cfg)


def cmd_status(args: list[str]) -> str:
    from bench.results import FAILED_FILE, RunDir

    cfg = load_config(args)
    lines = []
    counts = {"done": 0, "failed": 0, "started": 0, "missing": 0}
    for run in run_configs(cfg):
        rd = RunDir(cfg.runs_dir, run)
        if rd.is_complete():
            state = "done"
        elif (rd.path / FAILED_FILE).is_file():
            state = "failed"
        elif rd.path.is_dir():
            state = "started"
        else:
            state = "missing"
        counts[state] += 1
        lines.append(f"{state:<8} {rd.name}")
    head = ", ".join(f"{v} {k}" for k, v in counts.items())
    return f"sweep {cfg.sweep}: {head}\n" + "\n".join(lines)


def cmd_params(args: list[str]) -> str:
    from reports.params import write_params

    _registries()
    cfg = load_config(args)
    return write_params(cfg)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    setup_logging()
    handler = {"run": cmd_run, "list": cmd_list, "report": cmd_report, "status": cmd_status, "params": cmd_params}[
        command
    ]
    try:
        text = handler(argv)
    except (ConfigError, UnknownNameError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    sys.stdout.write(text.rstrip() + "\n")
    return 0
