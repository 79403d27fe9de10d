"""Steps a sweep names for the end of every ``run`` (the sweep file's ``after_runs:`` list).

A step is ``step(cfg, runs) -> None``: the sweep's config and its runs, so a step can hand results of
finished runs to runs that need them on the next pass (e.g. InfoSAM's Table 6 copies a trained relation
module to the path its transfer rows load: ``methods/infosam/transfer.py``). A step must be idempotent:
every ``run`` of the sweep calls it.

Where steps run: in the launcher (:func:`bench.runs.launcher.launch`), once per ``run`` command and on rank 0
only, never in ``report`` or ``status``. With ``launcher=local`` or ``inline`` they run once the launched runs
have ended (also when every run was already complete), before the command writes its report. With
``launcher=slurm`` the command returns as soon as the jobs are submitted, without waiting for them, so the
steps run before submitting: a job's results reach the steps at the next ``run`` of the sweep after it ended
(run it again once ``status`` shows the jobs done).
"""

from __future__ import annotations

from typing import Callable

from bench.config import BenchConfig, RunConfig
from bench.registry import Registry

SweepStep = Callable[[BenchConfig, list[RunConfig]], object]

SWEEP_STEPS: Registry[SweepStep] = Registry("sweep step", "methods")


def run_sweep_steps(cfg: BenchConfig, runs: list[RunConfig]) -> None:
    """Call the steps the sweep names, in order."""
    for name in cfg.after_runs:
        SWEEP_STEPS.get(name)(cfg, runs)
