"""The sweep's progress bar, weighted by each run's planned work instead of its count.

Each pending run weighs its planned FLOPs (:mod:`bench.runs.plan`: the training steps the trainer will take and
the images it will score, each at the FLOPs counted for that model), so a zero-shot run that only scores 12 images
moves the bar by little and an adapter run that trains 28 encoder steps by much. The counts are made in a
background thread after the jobs started (a few seconds on fake tensors, once per distinct model, on one torch
thread); a model that cannot be counted weighs its planned steps at the mean FLOPs of a counted step (or one unit
a step). A running run moves the bar by its training steps done (its ``progress.json``); its scoring
counts when it completes. The bar shows percent of the planned work and the runs done; its remaining time
extrapolates the work done since the plan was ready (the start-up before it is not work of the plan). Until then
the bar stands at 0 and says it is planning; if the plan fails, it counts runs.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Optional

from bench.config import RunConfig
from bench.runs.results import RunDir

log = logging.getLogger(__name__)


@dataclass
class Weight:
    """A run's planned work: ``train`` units over ``steps`` steps, then ``score`` units."""

    steps: int
    train: float
    score: float

    @property
    def total(self) -> float:
        return self.train + self.score


class WorkPlan:
    """Planned work per pending run, counted in a background thread (:meth:`start`)."""

    def __init__(self, runs: list[RunConfig], dirs: list[RunDir]) -> None:
        self.runs, self.dirs = runs, dirs
        self.weights: Optional[list[Weight]] = None
        self.failed = False  # the plan could not be made: the bar counts runs
        self._thread = threading.Thread(target=self._count, name="sweep-plan", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _count(self) -> None:
        import torch

        # one thread while counting: the count needs no parallel math (fake tensors, a random init), and idle OpenMP
        # workers of the controller spin on the cores the jobs train on (the demo: 178 s with 2, 172 s with 1, 160 s
        # uncounted); the controller's own setting comes back after
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self.weights = planned_weights(self.runs)
        except Exception as err:  # noqa: BLE001 - the bar falls back to counting runs; the sweep goes on
            self.failed = True
            log.info("progress by runs: the work of the sweep could not be planned (%s: %s)", type(err).__name__, err)
        finally:
            torch.set_num_threads(threads)

    def fraction(self) -> Optional[float]:
        """The share of the planned work done, in [0, 1]; None while the plan is being made (by runs if it failed)."""
        weights = self.weights
        if weights is None:
            if not self.failed:
                return None
            return sum(rd.is_complete() for rd in self.dirs) / max(1, len(self.dirs))
        done = 0.0
        for rd, weight in zip(self.dirs, weights):
            if rd.is_complete():
                done += weight.total
            elif weight.steps:
                done += weight.train * min(1.0, _steps_done(rd) / weight.steps)
        return done / max(sum(w.total for w in weights), 1e-12)


class WorkBar:
    """The sweep's bar: percent of the planned work (:meth:`WorkPlan.fraction`), the runs done, the current run.

    While the plan is being made it stands at 0 and says so; when the plan arrives its clock restarts at the work
    already done, so the remaining time extrapolates the rate of planned work, not the start-up before it."""

    def __init__(self, desc: str, **tqdm_options: Any) -> None:
        from tqdm import tqdm

        fmt = "{l_bar}{bar}| {n:.0f}% of the planned work [{elapsed}<{remaining}]{postfix}"
        self.bar = tqdm(total=100.0, desc=desc, bar_format=fmt, dynamic_ncols=True, **tqdm_options)
        self.planned = False

    def show(self, fraction: Optional[float], runs: str, current: str = "") -> None:
        """Draw ``fraction`` of the work (None: not planned yet), ``runs`` (e.g. "3/16 runs") and ``current``."""
        if fraction is not None:
            if not self.planned:
                self.planned = True
                self.bar.reset(total=100.0)
                self.bar.initial = round(100.0 * fraction, 1)  # tqdm's rate: (n - initial) / time since the reset
            self.bar.n = round(100.0 * fraction, 1)
        status = f" {runs}" + ("" if self.planned else " (planning the work)")
        self.bar.set_postfix_str(status + (f"; {current}" if current else ""), refresh=True)

    def close(self) -> None:
        self.bar.close()


def _steps_done(rd: RunDir) -> int:
    """Training steps a running run has taken (its live ``progress.json``), 0 before its first log row."""
    try:
        row = json.loads((rd.path / "progress.json").read_text())
        return (int(row["epoch"]) - 1) * int(row["steps"]) + int(row["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def planned_weights(runs: list[RunConfig]) -> list[Weight]:
    """Each run's :class:`Weight` from its plan: FLOPs where the model was counted, else its steps at the mean
    counted step's FLOPs (one unit a step, a tenth of a unit an image, when nothing was counted)."""
    from bench.runs.plan import plan_run, split_sizes
    from bench.runs.plan_cost import step_cost

    costs: dict = {}
    plans = [plan_run(run, split_sizes(run), step_cost(run, costs)) for run in runs]
    counted = [p.cost for p in plans if p.cost.step_flops is not None and p.steps]
    step_unit = sum(c.step_flops for c in counted) / len(counted) if counted else 1.0
    image_unit = step_unit / 10 if not counted else None
    weights = []
    for plan in plans:
        step = plan.cost.step_flops if plan.cost.step_flops is not None else step_unit
        image = plan.cost.eval_flops_per_image
        image = image if image is not None else (image_unit if image_unit is not None else step / 10)
        weights.append(Weight(plan.steps, plan.steps * step, plan.eval_images * image))
    return weights
