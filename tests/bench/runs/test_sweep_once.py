"""One CLI command expands its sweep once (``bench.runs.sweep.resolve_sweep``) and hands the runs on; the
sweep's ``after_runs`` steps run in the launcher (once per ``run``), never in ``report`` or ``status``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import bench.runs.launcher  # noqa: F401  (loaded before the patch: copies by name are caught)
import bench.runs.sweep
import reports.report  # noqa: F401
from bench.app.cli import main
from bench.contracts.sweep_steps import SWEEP_STEPS
from bench.runs.results import RunDir
from bench.runs.sweep import load_config, run_configs
from tests.tiny_runs import sweep_args


@pytest.fixture
def counted(monkeypatch):
    """Counts of ``run_configs`` (patched where ``resolve_sweep`` looks it up) and of a sweep step's calls."""
    calls = {"run_configs": 0, "steps": 0}
    real_expand = bench.runs.sweep.run_configs

    def expand(cfg):
        calls["run_configs"] += 1
        return real_expand(cfg)

    def step(cfg, runs):
        calls["steps"] += 1
        assert len(runs) == 2  # the sweep's runs, handed on

    monkeypatch.setattr(bench.runs.sweep, "run_configs", expand)  # where resolve_sweep looks it up
    for module in list(sys.modules.values()):  # and any copy imported by name (there should be none in bench)
        if module is not None and getattr(module, "run_configs", None) is real_expand:
            monkeypatch.setattr(module, "run_configs", expand)
    SWEEP_STEPS.names()  # the plugin steps register first
    monkeypatch.setitem(SWEEP_STEPS._entries, "count_calls", step)
    monkeypatch.setitem(SWEEP_STEPS._meta, "count_calls", {})

    def command(*argv: str) -> dict[str, int]:
        calls.update(run_configs=0, steps=0)
        assert main(list(argv)) == 0
        return dict(calls)

    return command


def test_each_command_resolves_the_sweep_once_and_only_run_calls_the_steps(tmp_path, counted):
    args = sweep_args(
        tmp_path, "methods=[zero_shot]", "seeds=[0,1]", "after_runs=[count_calls]", "data.synth.test_size=2"
    )
    assert counted("run", *args) == {"run_configs": 1, "steps": 1}  # two runs executed, then the steps
    cfg = load_config(args)
    assert all(RunDir(cfg.runs_dir, r).is_complete() for r in run_configs(cfg))
    assert counted("run", *args) == {"run_configs": 1, "steps": 1}  # nothing left to run: the steps still run
    assert counted("report", *args) == {"run_configs": 1, "steps": 0}
    assert (Path(cfg.runs_dir) / "_reports" / "smoke.md").is_file()
    assert counted("status", *args) == {"run_configs": 1, "steps": 0}


def test_under_slurm_the_steps_run_before_submitting(tmp_path, monkeypatch):
    """``launcher=slurm`` returns once the jobs are submitted: the steps run before submitting (they see the
    jobs that ended since the last ``run``), so a job's results reach them at the next ``run`` of the sweep."""
    import bench.runs.launcher as launcher

    order: list[str] = []
    SWEEP_STEPS.names()
    monkeypatch.setitem(SWEEP_STEPS._entries, "count_calls", lambda cfg, runs: order.append("steps"))
    monkeypatch.setitem(SWEEP_STEPS._meta, "count_calls", {})
    monkeypatch.setattr(launcher, "_submit_slurm", lambda cfg, pending: order.append(f"submit {len(pending)}"))
    cfg = load_config(sweep_args(tmp_path, "methods=[zero_shot]", "seeds=[0,1]", "after_runs=[count_calls]"))
    cfg.launcher.name = "slurm"
    assert launcher.launch(cfg) == [] and order == ["steps", "submit 2"]
    monkeypatch.setattr(RunDir, "is_complete", lambda self: True)  # the jobs have ended: every run complete
    order.clear()
    assert launcher.launch(cfg) == [] and order == ["steps"]  # the next run: nothing to submit, the steps run
