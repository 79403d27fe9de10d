"""``plan sweep=NAME [gpu=h100|h200|a100|cpu] [mfu=X] [key=value ...]``: what a sweep will cost, before it runs.

Per run: the optimizer steps and micro-steps the trainer will take (:func:`bench.train.trainer._epoch_steps` on the
training split's size after the validation hold-out, ``train.batch_size`` with drop_last, the protocol's epochs,
``train.grad_accumulation``), the evaluation passes (:class:`bench.eval.selection.EpochSelector`'s candidate epochs
on the validation or test split, plus the final test pass, plus one pass over each ``eval.also_test`` test set at
the reported checkpoint), and FLOPs counted on the real architecture
(:mod:`bench.runs.plan_cost`). Per sweep: total FLOPs, GPU-hours at an MFU (measured by ``tools.gpu_check`` when its
file has one for that GPU, else :data:`bench.hardware.flops.DEFAULT_MFU`, stated as assumed) and the wall time with
the launcher's parallelism. Nothing is written into ``runs/``.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from dataclasses import dataclass
from typing import Optional

from bench.config import ConfigError, RunConfig, row_label
from bench.config.overrides import parse_changes
from bench.contracts.dataset import DATASETS, DatasetError, dataset_info, dataset_tools
from bench.eval.selection import EpochSelector
from bench.hardware import flops as hw
from bench.runs.plan_cost import Cost, step_cost
from bench.runs.sweep import Sweep, load_config, resolve_sweep
from bench.train.trainer import _epoch_steps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Splits:
    """Image counts of a dataset's splits as a run sees them, and where they come from."""

    train: int
    val: int
    test: int
    source: str  # "data" (built from the files) or a sentence naming the published counts used


@dataclass
class RunPlan:
    """One run's planned work."""

    run: RunConfig
    epochs: int
    steps: int  # optimizer steps
    micro_steps: int  # forward/backward passes (steps × train.grad_accumulation)
    test_passes: int  # scored epochs on the test split (the final pass included)
    val_passes: int
    splits: Splits
    cost: Cost
    also_test: int = 0  # images of the eval.also_test test sets, each scored once at the reported checkpoint

    @property
    def eval_images(self) -> int:
        return self.test_passes * self.splits.test + self.val_passes * self.splits.val + self.also_test

    @property
    def flops(self) -> Optional[float]:
        """Training plus evaluation FLOPs; None when the model could not be counted."""
        if self.cost.step_flops is None or self.cost.eval_flops_per_image is None:
            return None
        return self.steps * self.cost.step_flops + self.eval_images * self.cost.eval_flops_per_image


@dataclass(frozen=True)
class Compute:
    """The device a plan prices: its peak (FLOP/s) and MFU, and the words that say where each comes from."""

    name: str
    peak: float
    mfu: float
    text: str

    @property
    def rate(self) -> float:
        return self.peak * self.mfu


def held_out(pool: int, fraction: float) -> int:
    """Validation images drawn from a training pool of ``pool`` (the count ``datasets._splits.draw_validation``
    draws; ``tests/bench/runs/test_plan.py`` checks the two agree)."""
    if fraction <= 0 or pool < 2:
        return 0
    return min(pool - 1, max(1, round(fraction * pool)))


def split_sizes(run: RunConfig) -> Splits:
    """The run's split sizes: from the data when it can be built, else from the dataset's published counts (the
    validation split drawn from the published training pool by its ``val_fraction``, as the layouts without
    validation files do); ConfigError when neither is available."""
    builder = DATASETS.get(run.dataset)
    try:
        sizes = [len(builder(split, run.data)) for split in ("train", "test")]
        try:
            val = len(builder("val", run.data)) if run.eval.select == "val_best" else 0
        except DatasetError:
            val = 0
        return Splits(sizes[0], val, sizes[1], "data")
    except (DatasetError, OSError) as err:
        absent = str(err)
    try:
        spec = dataset_tools().real_spec(run.dataset)
    except ConfigError:
        raise ConfigError(f"plan: no split sizes for {run.dataset!r}: {absent}") from None
    published = spec.published
    if "val" in published:
        return Splits(published["train"], published["val"], published["test"], "published train/val/test")
    pool = published["train"]
    val = held_out(pool, spec.val_fraction) if run.data.hold_out_val else 0
    how = f"val = {spec.val_fraction:.0%} held out of it" if val else "no validation held out"
    return Splits(pool - val, val, published["test"], f"published training pool {pool} ({how})")


def plan_run(run: RunConfig, splits: Splits, cost: Cost, also_test: int = 0) -> RunPlan:
    """Steps and evaluation passes of ``run`` as the runner and trainer will take them (early stopping by
    ``eval.patience`` can only take fewer); ``also_test``: the images of its ``eval.also_test`` test sets."""
    epochs = int(run.train.epochs if run.train.epochs is not None else dataset_info(run.dataset).epochs)
    train_cfg = dataclasses.replace(run.train, epochs=epochs)
    trains = cost.trainable != 0 and epochs > 0  # -1 (not counted): steps as if it trains
    per_epoch = _epoch_steps(splits.train, train_cfg) if trains else 0
    rule = run.eval.select
    if rule == "val_best" and splits.val == 0:
        rule = "last"  # as the runner: no validation split, the last epoch is reported
    selector = EpochSelector(rule=rule, epochs=epochs, k=run.eval.select_epochs, metric="", definition="")
    scored = len(selector.candidates) if trains else 0
    test, val = (scored, 0) if rule == "test_last" and scored else (1, scored if rule == "val_best" else 0)
    steps = per_epoch * epochs
    micro = steps * run.train.grad_accumulation
    return RunPlan(run, epochs, steps, micro, test, val, splits, cost, also_test)


def compute_for(name: str, mfu: Optional[float]) -> Compute:
    """The device ``gpu=name`` with its MFU: ``mfu=`` given, else measured (``tools.gpu_check``'s file), else
    :data:`~bench.hardware.flops.DEFAULT_MFU`."""
    gpu = hw.gpu(name)
    if gpu is None:
        peak = hw.cpu_matmul_tflops()
        where = f"cpu: fp32 matmul rate measured now {peak * 1e3:.1f} GFLOP/s (the peak)"
    else:
        peak, where = gpu.peak_tflops, f"{name}: {gpu.label}, bf16 dense peak {gpu.peak_tflops:.0f} TFLOP/s"
    stored = hw.read_mfus().get(name)
    if mfu is not None:
        how = "given (mfu=)"
    elif stored is not None:
        mfu, how = float(stored["mfu"]), f"measured on {stored.get('date', '?')} by tools.gpu_check ({hw.mfu_file()})"
    else:
        mfu, how = hw.DEFAULT_MFU, f"assumed (no measurement in {hw.mfu_file()}; python -m tools.gpu_check stores one)"
    return Compute(name, peak * 1e12, mfu, f"{where}; MFU {mfu:.2f} {how}")


def slots(sweep: Sweep) -> tuple[int, str]:
    """Runs at a time under the sweep's launcher, and the sentence that says so."""
    launcher = sweep.cfg.launcher
    gpus = launcher.gpus_per_run
    if launcher.name == "inline":
        n, how = 1, "launcher=inline: one run at a time"
    elif launcher.name == "slurm":
        n, how = sweep.cfg.slurm.array_parallelism, f"slurm.array_parallelism={sweep.cfg.slurm.array_parallelism}"
    else:
        n, how = launcher.max_parallel, f"launcher.max_parallel={launcher.max_parallel}"
    return n, f"{how} × launcher.gpus_per_run={gpus} = {n * gpus} GPUs"


def wall_seconds(durations: list[float], n: int) -> float:
    """Makespan of ``durations`` on ``n`` slots, longest first, each to the slot that frees first."""
    free = [0.0] * max(1, n)
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(free, free[0] + d)
    return max(free)


def _hours(seconds: float) -> str:
    if seconds >= 360:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def sum_flops(plans: list[RunPlan]) -> float:
    """Total FLOPs of the counted runs."""
    return sum(p.flops for p in plans if p.flops is not None)


def parse_plan_args(args: list[str]) -> tuple[str, Optional[float], list[str]]:
    """``gpu=`` and ``mfu=`` taken out of ``args`` (the rest are sweep overrides)."""
    gpu_name, mfu, rest = "h100", None, []
    for change in parse_changes(args):
        if change.key == "gpu":
            gpu_name = str(change.value)
        elif change.key == "mfu":
            mfu = float(change.value)
            if not 0 < mfu <= 1:
                raise ConfigError(f"mfu={change.value}: must be in (0, 1]")
        else:
            rest.append(change.text)
    hw.gpu(gpu_name)  # an unknown name stops here, listing the choices
    return gpu_name, mfu, rest


def build_plan(args: list[str], costs: Optional[dict[str, Cost]] = None) -> tuple[list[RunPlan], Compute, Sweep]:
    """The planned runs of the sweep ``args`` name, and the device they are priced on; ``costs``: counts to reuse
    (one per distinct model and batch, :func:`bench.runs.plan_cost.step_cost`), e.g. over several sweeps."""
    gpu_name, mfu, rest = parse_plan_args(args)
    sweep = resolve_sweep(load_config(rest))
    compute = compute_for(gpu_name, mfu)
    sizes: dict[tuple[str, str], Splits] = {}
    costs = {} if costs is None else costs  # one count per distinct model and batch (a sweep has hundreds of runs)
    plans = []

    def sizes_of(run: RunConfig) -> Splits:
        key = (run.dataset, repr((run.data, run.eval.select)))
        if key not in sizes:
            sizes[key] = split_sizes(run)
        return sizes[key]

    for run in sweep.runs:
        also = sum(sizes_of(dataclasses.replace(run, dataset=name)).test for name in run.eval.also_test)
        plans.append(plan_run(run, sizes_of(run), step_cost(run, costs), also))
    return plans, compute, sweep


def render(plans: list[RunPlan], compute: Compute, sweep: Sweep) -> str:
    """The plan's table and totals."""
    n, how = slots(sweep)
    gpus_per_run = sweep.cfg.launcher.gpus_per_run
    lines = [f"plan of sweep {sweep.cfg.sweep}: {len(plans)} runs (nothing is run or written)", compute.text]
    seen: dict[str, str] = {}
    for p in plans:
        if p.run.dataset not in seen:
            s = p.splits
            where = "from the data" if s.source == "data" else f"from {s.source}: data absent under data.root"
            seen[p.run.dataset] = f"  {p.run.dataset}: train {s.train}, val {s.val}, test {s.test} ({where})"
    lines += ["split sizes:", *seen.values(), "cost per distinct model (FlopCounterMode on the real architecture):"]
    for text in dict.fromkeys(p.cost.text for p in plans):
        lines.append(f"  {text}")
    head = f"{'dataset':<20} {'method':<28} {'seed':>4} {'ep':>3} {'steps':>7} {'micro':>7} {'eval imgs':>12} "
    lines += ["", head + f"{'TFLOP':>10} {'GPU-h':>8}"]
    durations = []
    for p in plans:
        flops = p.flops
        cells = f"{'n/a':>10} {'n/a':>8}"
        if flops is not None:
            durations.append(flops / compute.rate / gpus_per_run)
            cells = f"{flops / 1e12:>10.2f} {flops / compute.rate / 3600:>8.4f}"
        passes = f"{p.test_passes}t+{p.val_passes}v" + ("+a" if p.also_test else "")
        lines.append(
            f"{p.run.dataset:<20} {row_label(p.run)[:28]:<28} {p.run.seed:>4} {p.epochs:>3} {p.steps:>7} "
            f"{p.micro_steps:>7} {passes:>6} {p.eval_images:>5} {cells}"
        )
    total = sum_flops(plans)
    missing = sum(p.flops is None for p in plans)
    lines += [
        "",
        f"total: {total / 1e15:.3f} PFLOP = {total / compute.rate / 3600:.2f} GPU-hours on {compute.name} at MFU "
        f"{compute.mfu:.2f}" + (f"; {missing} runs NOT COUNTED (see above), not in the total" if missing else ""),
        f"wall time: {_hours(wall_seconds(durations, n))} with {how} (runs longest first; DDP assumed linear)",
        "notes: eval imgs = test passes (t) × test images + validation passes (v) × validation images (+a: one pass",
        "  over each eval.also_test test set at the reported checkpoint); Conv-LoRA's conv experts are counted at",
        "  their expected FLOPs under uniform top-1 routing over the M experts (closed form, the gate counted); task",
        "  losses (CE + Dice, Mask2Former matching) are not matmuls and are not counted; steps are an",
        "  upper bound (eval.patience may stop early, batches of < 2 non-empty masks are skipped); the one-off fill of",
        "  the encoder cache and data loading are not counted; peak memory: fp32 weights + gradients + Adam states +",
        "  tensors saved for backward (bf16 autocast roughly halves the activations).",
    ]
    return "\n".join(lines)


def plan_command(args: list[str]) -> str:
    """The ``plan`` command."""
    plans, compute, sweep = build_plan(args)
    return render(plans, compute, sweep)
