"""Step profile: ``python -m tools.profile [key=value ...]`` shows where a training step's time goes.

For every method of the sweep (default: ``adapter`` and ``adapter+infosam`` on the demo setting,
LiteMedSAM at 128 px), it times the data pipeline for one batch (dataset read, prompts, collate), then
runs ``repeat`` training steps (after two warm-up steps) under ``torch.profiler`` and prints

* the phases of :func:`bench.train.trainer.train_step` — student encoder / decoder, frozen teacher,
  structure loss, distiller loss, backward, optimizer — in ms per step and as a share of the step;
* the operators with the most self time.

Examples::

    python -m tools.profile                                   # demo setting
    python -m tools.profile backbone=sam_vit_b backbone.random_init=true profile.repeat=1  # random ViT-B, 1024 px
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

from bench.config import RunConfig
from bench.config.overrides import command_args
from bench.hardware.accel import pick_device
from bench.logs import setup_logging
from bench.runs.runner import build_parts
from bench.runs.sweep import load_config, run_configs
from tools.perf import first_batch, prompted_train_set, sync, training_step

log = logging.getLogger("samfit.profile")

PHASES = (
    "student.encoder",
    "student.decoder",
    "teacher",
    "loss.structure",
    "loss.distiller",
    "step.backward",
    "step.optimizer",
)


@dataclass
class StepProfile:
    method: str
    step_ms: float
    data_ms: float
    phases_ms: dict[str, float]
    top_ops: str


def profile_method(run: RunConfig, repeat: int, top: int) -> StepProfile:
    device = pick_device(run.train.device)
    parts = build_parts(run, device)
    prompted = prompted_train_set(run, parts)
    t = time.perf_counter()
    batch = first_batch(prompted, run.train.batch_size)
    data_ms = (time.perf_counter() - t) * 1000
    train_once = training_step(parts, run, batch, device)

    def step() -> None:
        train_once()
        sync(device)

    for _ in range(2):  # warm-up: fills the encoder cache, allocates optimizer state and buffers
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    t = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(repeat):
            step()
    step_ms = (time.perf_counter() - t) * 1000 / repeat
    averages = prof.key_averages()
    totals = {e.key: e.cpu_time_total / 1000 / repeat for e in averages if e.key in PHASES}
    phases = {name: totals[name] for name in PHASES if name in totals}
    ops = averages.table(sort_by="self_cpu_time_total", row_limit=top)
    return StepProfile(run.method, step_ms, data_ms, phases, ops)


def render(profiles: list[StepProfile], run: RunConfig, repeat: int) -> str:
    lines = [
        f"backbone {run.backbone.name} (checkpoint: {run.backbone.checkpoint or 'bundled/random'}) @ "
        f"{run.backbone.img_size or 'native'} px, batch {run.train.batch_size}, precision {run.train.precision}, "
        f"channels_last {run.train.channels_last}, {torch.get_num_threads()} threads, mean of {repeat} step(s)"
    ]
    for p in profiles:
        lines.append(f"\n{p.method}: step {p.step_ms:.1f} ms; building one batch (no workers) {p.data_ms:.1f} ms")
        for name, ms in p.phases_ms.items():
            lines.append(f"  {name:<16} {ms:10.1f} ms  {100 * ms / p.step_ms:5.1f} %")
        rest = p.step_ms - sum(p.phases_ms.values())
        lines.append(f"  {'(other)':<16} {rest:10.1f} ms  {100 * rest / p.step_ms:5.1f} %")
    if len(profiles) == 2:
        a, b = profiles
        lines.append(f"\n{b.method} step / {a.method} step: {b.step_ms / a.step_ms:.3f}")
    for p in profiles:
        lines.append(f"\nTop operators by self time, {p.method}:\n{p.top_ops}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    setup_logging(logging.WARNING)
    args = list(sys.argv[1:] if argv is None else argv)
    own = {k: v for k, v in command_args(args).items() if k.startswith("profile.")}
    rest = [a for a in args if not a.startswith("profile.")]
    repeat, top = int(own.pop("profile.repeat", "3")), int(own.pop("profile.top", "12"))
    if own:
        raise SystemExit(f"error: unknown profile option(s) {sorted(own)}; valid: profile.repeat, profile.top")
    defaults = ["sweep=demo", "datasets=[synth_polyp]", "seeds=[0]", "methods=[adapter,adapter+infosam]"]
    cfg = load_config(defaults + rest)
    runs = run_configs(cfg)
    profiles = []
    with tempfile.TemporaryDirectory() as cache:
        for run in runs:
            run.data.cache_dir = cache
            profiles.append(profile_method(run, repeat, top))
    print(render(profiles, runs[0], repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
