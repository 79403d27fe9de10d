"""The FLOPs and memory of one run's training step and of scoring one image, counted on the real architecture.

The student (PEFT injected, the task's head), the frozen teacher and the distiller are built as
:func:`bench.runs.runner.build_parts` builds them, but inside a ``FakeTensorMode``
(:func:`bench.hardware.flops.fake_mode`) with random init: no weights are read and no memory is taken, so
SAM ViT-H at 1024 px is counted in seconds. One step is :func:`bench.train.trainer.compute_loss` and its backward
at ``train.batch_size`` (box prompts), counted by ``FlopCounterMode``. With ``data.encoder_cache`` (the default)
the trainer serves the longest frozen encoder prefix of the student and the frozen teacher's whole encoder from
the cache (README, "Speed"), so their forward FLOPs, counted apart, are taken out: a cached distiller costs its
teacher's decoder pass, not its encoder. Evaluation is the student's no-grad forward
(:func:`bench.train.trainer.probe_features` without the teacher), its cached prefix likewise taken out.
"""

from __future__ import annotations

import copy
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator, Optional

import torch

from bench.backbones import Backbone, build_backbone
from bench.config import RunConfig, to_dict
from bench.contracts.dataset import DATASETS, dataset_info
from bench.contracts.distill import DistillContext
from bench.contracts.methods import method_options
from bench.contracts.peft import trainable_parameters
from bench.data.encoders import CachedEncoder
from bench.hardware import flops as hw
from bench.runs.runner import build_student, teacher_config
from bench.tasks import build_task
from bench.train.trainer import TrainParts, compute_loss, probe_features

log = logging.getLogger(__name__)
CPU = torch.device("cpu")  # fake tensors on the CPU device: autocast and every kernel's meta function work there


@dataclass(frozen=True)
class Cost:
    """What one step and one scored image of a run cost.

    Attributes:
        step_flops: FLOPs of one optimizer step's forward and backward (steady state: cached prefixes excluded).
        eval_flops_per_image: FLOPs of scoring one image (student forward, no grad, cached prefix excluded).
        trainable: Trainable parameters (student + distiller); 0 = nothing to train.
        peak_bytes: Estimated peak memory of a step: fp32 weights + gradients + Adam states + saved activations.
        text: One line describing the count.
    """

    step_flops: Optional[float]  # None: not countable (see text)
    eval_flops_per_image: Optional[float]
    trainable: int  # -1: unknown
    peak_bytes: Optional[int]
    text: str


def cost_key(run: RunConfig) -> str:
    """What the FLOPs of a run depend on: its model (backbone, size, teacher, method and options), batch, the
    encoder cache and the dataset's task; seeds, datasets of one task and the recipe's scalars share a count."""
    data = to_dict(run)
    info = dataset_info(run.dataset)
    wanted = {k: data[k] for k in ("backbone", "teacher", "method", "peft", "distill", "protocol", "task")}
    wanted["batch"] = (run.train.batch_size, run.train.prompt, run.data.encoder_cache, run.data.preprocess)
    wanted["dataset_task"] = (info.task, info.classes, run.dataset if info.task != "binary" else "")
    return json.dumps(wanted, sort_keys=True, default=str)


def step_cost(run: RunConfig, cache: dict[str, Cost]) -> Cost:
    """The :class:`Cost` of ``run``, counted once per :func:`cost_key` into ``cache``. A model whose step reads a
    tensor's value (fake tensors have none) gets a cost of None FLOPs that says why, not a guess."""
    key = cost_key(run)
    if key not in cache:
        try:
            cache[key] = count_cost(run)
        except Exception as err:  # noqa: BLE001 - any op without a fake-tensor rule: say so, count the rest
            log.debug("counting %s failed", run.method, exc_info=True)
            name = f"{run.backbone.name}@{run.backbone.img_size or 'native'} {run.method} batch {run.train.batch_size}"
            cache[key] = Cost(None, None, -1, None, f"{name}: NOT COUNTED ({err.__class__.__name__}: {err})")
    return cache[key]


def architecture_only(run: RunConfig) -> RunConfig:
    """``run`` with random weights (no checkpoint read) and without the execution switches that move tensors."""
    r = copy.deepcopy(run)
    r.backbone = replace(r.backbone, checkpoint=None, random_init=True)
    r.teacher = replace(r.teacher, checkpoint=None)
    r.train = replace(r.train, channels_last=False, compile=False, grad_checkpoint=False)
    return r


@contextmanager
def _quiet() -> Iterator[None]:
    """Random weights are on purpose here: the builders' warnings about them are not shown. Distributions skip
    their argument checks (a check reads values, which fake tensors do not have)."""
    validate = torch.distributions.Distribution._validate_args
    logging.disable(logging.WARNING)
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        torch.distributions.Distribution.set_default_validate_args(validate)


def binary_batch(run: RunConfig, size: int) -> dict[str, Any]:
    """A collated binary batch as :func:`bench.data.batches.collate` makes it (values do not matter: fake)."""
    b, n = run.train.batch_size, run.train.num_points
    return {
        "image": torch.zeros(b, 3, size, size),
        "target": torch.zeros(b, size, size),
        "box": torch.zeros(b, 4),
        "points": torch.zeros(b, n, 2),
        "labels": torch.ones(b, n, dtype=torch.long),
        "valid": torch.ones(b, dtype=torch.bool),
        "index": list(range(b)),
        "name": [f"plan{i}" for i in range(b)],
        "size": torch.full((b, 2), size),
    }


def _batch(run: RunConfig, parts: TrainParts) -> dict[str, Any]:
    """The step's batch: a binary one, or ``batch_size`` items of the task's dataset (the real split)."""
    if parts.task is None:
        return binary_batch(run, parts.student.img_size)
    items = parts.task.dataset(DATASETS.get(run.dataset)("train", run.data), parts.student, run.seed, train=True)
    return parts.task.collate([items[i % len(items)] for i in range(run.train.batch_size)])


def _parts(run: RunConfig, mode: Any) -> TrainParts:
    """Student, teacher and distiller as ``build_parts`` wires them, uncached, with fake tensors (``mode``)."""
    spec, _, distill_options = method_options(run.method, run.peft, run.distill, run.protocol)
    task = build_task(dataset_info(run.dataset), run)
    student, peft, _ = hw.build_light(lambda: build_student(run, task))
    hw.to_fake(student, mode)
    parts = TrainParts(student=student, student_encoder=None, peft=peft, task=task)  # type: ignore[arg-type]
    blocks = set(peft.feature_blocks(student))
    if spec.distiller_cls is not None:
        teacher = hw.to_fake(hw.build_light(lambda: build_backbone(teacher_config(run))), mode)
        teacher.preprocess = run.data.preprocess
        teacher.requires_grad_(False)
        context = DistillContext(
            student_embed_dim=student.embed_dim,
            teacher_embed_dim=teacher.embed_dim,
            student_block_dims=student.block_dims(),
            teacher_block_dims=teacher.block_dims(),
            student_stages=student.stage_ends(),
            teacher_stages=teacher.stage_ends(),
        )
        parts.distiller = hw.to_fake(hw.build_light(lambda: spec.distiller_cls(distill_options, context)), mode)
        parts.teacher = teacher
        parts.teacher_encoder = CachedEncoder(teacher, None, tuple(parts.distiller.teacher_blocks))
        blocks |= set(parts.distiller.student_blocks)
    parts.student_encoder = CachedEncoder(student, None, tuple(blocks))
    return parts


def _prefix_flops(model: Backbone, encoder: CachedEncoder, images: torch.Tensor, cached: bool) -> int:
    """Forward FLOPs of the encoder steps the cache would serve (0 without the cache)."""
    stop = model.frozen_prefix() if cached else 0
    if stop == 0:
        return 0
    with torch.no_grad():
        return hw.count(lambda: model.encode_prefix(images, stop, encoder.blocks)).flops


def _params_bytes(*modules: Optional[torch.nn.Module]) -> int:
    return sum(p.numel() * 4 for m in modules if m is not None for p in m.parameters())


def count_cost(run: RunConfig) -> Cost:
    """Count one training step and one scored image of ``run`` (see the module docstring)."""
    r = architecture_only(run)
    cached = run.data.encoder_cache
    mode = hw.fake_mode()
    with _quiet():
        parts = _parts(r, mode)
    with _quiet(), mode:
        batch = _batch(r, parts)
        use_box = None if r.train.prompt == "none" else True
        trainable = trainable_parameters(parts.student) + (
            trainable_parameters(parts.distiller) if parts.distiller is not None else 0
        )

        def step() -> None:
            terms = compute_loss(parts, batch, use_box, CPU, r.train)
            torch.stack([t.float() for t in terms.values()]).sum().backward()

        full = hw.count(step) if trainable else None
        images = batch["image"]
        s_prefix = _prefix_flops(parts.student, parts.student_encoder, images, cached)
        t_prefix = 0
        if parts.teacher is not None and parts.teacher_encoder is not None:
            t_prefix = _prefix_flops(parts.teacher, parts.teacher_encoder, images, cached)
        params = _params_bytes(parts.student, parts.teacher, parts.distiller)
        parts.distiller = None  # scoring runs the student only, without gradients
        parts.student.requires_grad_(False)
        evaluation = hw.count(lambda: probe_features(parts, batch, use_box, CPU, r.train))
    b = r.train.batch_size
    step_flops = float(full.flops - s_prefix - t_prefix) if full is not None else 0.0
    eval_flops = float(evaluation.flops - s_prefix) / b
    peak = params + trainable * 4 * 3 + (full.saved_bytes if full is not None else 0)
    teacher = ""
    if t_prefix:
        teacher = ", teacher embedding cached (its decoder pass counted)"
    elif parts.teacher is not None:
        teacher = ", + teacher forward"
    size = parts.student.img_size
    text = (
        f"{r.backbone.name}@{size} {r.method} batch {b}: {step_flops / 1e12:.3f} TFLOP/step (fwd+bwd{teacher}"
        f"{', frozen prefix cached' if s_prefix else ''}), {eval_flops / 1e12:.4f} TFLOP/scored image, "
        f"{trainable / 1e6:.2f}M trainable, est. peak {peak / 2**30:.2f} GiB"
    )
    return Cost(step_flops, eval_flops, trainable, peak, text)
