"""Benchmark command: ``python -m tools.perf [key=value ...]`` prints timings and ratios from one run.

Measures, on the same batch and backbone (LiteMedSAM at 128 px by default), on ``train.device``
(``device=cuda`` on a GPU machine):

1. a training step of ``adapter+infosam`` against the plain ``adapter`` step, with and without the
   encoder cache (the frozen teacher's embedding and the student's frozen prefix);
2. the InfoSAM loss at α = 2 (Frobenius norms) against the eigenvalue path at α = 1.01;
3. a decoder-only epoch with the cached embedding against one without.
"""

from __future__ import annotations

import copy
import functools
import logging
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import torch

from bench.config import RunConfig
from bench.contracts.dataset import DATASETS
from bench.data.batches import PromptedDataset, collate
from bench.hardware.accel import pick_device
from bench.logs import setup_logging
from bench.runs.runner import build_parts
from bench.runs.sweep import load_config, run_configs
from bench.train.trainer import TrainParts, train_step
from methods.infosam.losses import relation_compression_loss, relation_distillation_loss
from methods.infosam.renyi import gram, joint_entropy, mutual_information, normalize_trace, renyi_entropy

log = logging.getLogger("samfit.perf")


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings include it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], object], repeat: int, device: torch.device, warmup: int = 2) -> float:
    """Median seconds of ``repeat`` calls after ``warmup`` calls (device work included)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def prompted_train_set(run: RunConfig, parts: TrainParts) -> PromptedDataset:
    """The run's training split, prompted as the trainer prompts it."""
    data = DATASETS.get(run.dataset)("train", run.data)
    return PromptedDataset(data, parts.student, run.seed, train=True, box_jitter=run.train.box_jitter)


def first_batch(prompted: PromptedDataset, batch_size: int) -> dict[str, Any]:
    """The first ``batch_size`` samples, collated (wrapping around a smaller split)."""
    return collate([prompted[i % len(prompted)] for i in range(batch_size)])


def training_step(
    parts: TrainParts, run: RunConfig, batch: dict[str, Any], device: torch.device
) -> Callable[[], object]:
    """One call = one :func:`bench.train.trainer.train_step` of ``parts`` on ``batch`` (box prompts), with its
    own Adam."""
    params = parts.trainable()
    optimizer = torch.optim.Adam(params, lr=run.train.lr)
    return functools.partial(train_step, parts, batch, True, device, run.train, optimizer, params)


def step_times(runs: dict[str, RunConfig], batch: dict, repeat: int, device: torch.device) -> dict[str, float]:
    """Median training-step seconds of each run, measured in interleaved rounds (one step of every run per
    round), so slow drifts of the machine (clock, other load) hit every run alike and cancel in ratios."""
    steps = {key: training_step(build_parts(run, device), run, batch, device) for key, run in runs.items()}
    for _ in range(2):  # warm-up: cache fill, optimizer state, allocator
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {key: [] for key in steps}
    for _ in range(repeat):
        for key, step in steps.items():
            sync(device)
            t = time.perf_counter()
            step()
            sync(device)
            times[key].append(time.perf_counter() - t)
    return {key: statistics.median(values) for key, values in times.items()}


def entropy_time(alpha: float, batch_size: int, repeat: int, device: torch.device, backward: bool = False) -> float:
    """The part of L_info that α changes: entropies of B×B Gram matrices (L_r and L_d), forward or
    forward + backward (training differentiates them: eigvalsh's backward is the costly part)."""
    g = torch.Generator().manual_seed(0)
    g_i, g_m, g_t, g_s = (
        gram(torch.randn(batch_size, 64, generator=g).to(device)).requires_grad_(backward) for _ in range(4)
    )

    def fn() -> None:
        loss = renyi_entropy(normalize_trace(g_t), alpha) - joint_entropy(g_i, g_m, g_t, alpha=alpha)
        loss = loss + mutual_information(g_t, g_s, alpha=alpha)
        if backward:
            loss.backward()

    return timeit(fn, repeat, device, warmup=5)


def loss_time(alpha: float, batch_size: int, repeat: int, device: torch.device) -> float:
    g = torch.Generator().manual_seed(0)
    z_i = torch.randn(batch_size, 256, 64, 64, generator=g).to(device)
    z_m = torch.randn(batch_size, 256, generator=g).to(device)
    r_t = torch.nn.functional.normalize(torch.randn(batch_size, 4096, generator=g), dim=1).to(device)
    r_s = torch.nn.functional.normalize(torch.randn(batch_size, 4096, generator=g), dim=1).to(device)

    def fn() -> None:
        relation_compression_loss(z_i, z_m, r_t, alpha=alpha)
        relation_distillation_loss(r_t, r_s, alpha=alpha)

    return timeit(fn, repeat, device, warmup=3)


def main(argv: list[str] | None = None) -> int:
    setup_logging(logging.WARNING)
    args = list(sys.argv[1:] if argv is None else argv)
    defaults = ["sweep=demo", "datasets=[synth_polyp]", "seeds=[0]", "methods=[adapter,adapter+infosam,decoder_only]"]
    cfg = load_config(defaults + args)
    runs = run_configs(cfg)  # expanded once
    methods = [run.method for run in runs]
    base = runs[0]
    device = pick_device(base.train.device)
    repeat = 9
    rows: dict[tuple[str, bool], float] = {}
    with tempfile.TemporaryDirectory() as cache:
        base.data.cache_dir = cache
        parts = build_parts(base, device)
        batch = first_batch(prompted_train_set(base, parts), base.train.batch_size)
        for cached in (True, False):  # one interleaved measurement per cache setting
            runs = {}
            for method in methods:
                run = copy.deepcopy(base)
                run.method, run.data.encoder_cache = method, cached
                runs[method] = run
            for method, sec in step_times(runs, batch, repeat, device).items():
                rows[(method, cached)] = sec
    a2, a101 = loss_time(2.0, 4, 50, device), loss_time(1.01, 4, 50, device)
    print(
        f"backbone {base.backbone.name} @ {parts.student.img_size}px, precision {base.train.precision}, "
        f"batch {base.train.batch_size}, median of {repeat} interleaved steps, device {device}, "
        f"{torch.get_num_threads()} threads"
    )
    for (method, cached), sec in rows.items():
        print(f"  step {method:<16} cache={'on ' if cached else 'off'} {sec * 1000:9.1f} ms")
    if ("adapter+infosam", True) in rows and ("adapter", True) in rows:
        for cached, target in ((True, "   (target <= 1.10)"), (False, "")):
            ratio = rows[("adapter+infosam", cached)] / rows[("adapter", cached)]
            print(f"InfoSAM step / adapter step, cache {'on ' if cached else 'off'}: {ratio:.3f}{target}")
    if ("decoder_only", True) in rows:
        ratio = rows[("decoder_only", False)] / rows[("decoder_only", True)]
        print(f"decoder-only step (= epoch ratio), no cache / cache: {ratio:.1f}x   (target >= 10)")
    print(
        f"L_info incl. Gram matrices of (4,256,64,64) features: alpha=2 {a2 * 1000:.2f} ms, "
        f"alpha=1.01 {a101 * 1000:.2f} ms: {a101 / a2:.1f}x faster   (target >= 20)"
    )
    print("entropy terms only (given B x B Gram matrices), alpha=2 (Frobenius) vs alpha=1.01 (eigvalsh):")
    for b in (4, 16, 64, 256):
        for backward in (False, True):
            e2, e101 = entropy_time(2.0, b, 50, device, backward), entropy_time(1.01, b, 50, device, backward)
            kind = "forward + backward" if backward else "forward           "
            print(f"  B={b:<4} {kind} {e2 * 1e6:9.0f} us vs {e101 * 1e6:9.0f} us: {e101 / e2:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
