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

Parts that read tensor values (which fake tensors do not have) are counted by convention (:func:`value_free`):

* a top-1 mixture of conv experts (Conv-LoRA's ``MoEConv``: expert i up-samples ×i, then a 3×3 conv r → r) is
  counted at its expected FLOPs under uniform routing over the M experts (:func:`expert_flops`, a closed form;
  the bicubic resizes are not matmuls); its gate is run and counted, the dispatch that calls ``nonzero`` is not;
* the task losses (CE + Dice, the Mask2Former matching loss) read values (``any``, ``unique``, Hungarian
  matching) and have no matmul worth counting (the matching costs are < 1e-4 of a step): a value-free stand-in
  (the mean of the logits) carries the backward through the head and the model;
* a task run whose dataset is absent gets a batch of blank label maps at the input size.
"""

from __future__ import annotations

import copy
import logging
import types
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator, Optional
from unittest import mock

import torch

from bench.backbones import Backbone, build_backbone
from bench.config import RunConfig
from bench.contracts.dataset import DATASETS, DatasetError, dataset_info
from bench.contracts.distill import DistillContext
from bench.contracts.methods import method_options
from bench.contracts.peft import trainable_parameters
from bench.data.encoders import CachedEncoder
from bench.hardware import flops as hw
from bench.runs.runner import build_student, teacher_config
from bench.tasks import build_task, semantic
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


def _weight_option(name: str, value: Any) -> bool:
    """A distiller option that only scales a loss term (``weight``, ``*_weight``, ``w_*``, ``lambda*``): it does
    not change the FLOPs, unless it is 0 (a zero weight may switch its term off)."""
    weight = name == "weight" or name.endswith("_weight") or name.startswith(("w_", "lambda"))
    return weight and isinstance(value, (int, float)) and value != 0


def cost_key(run: RunConfig) -> str:
    """What the FLOPs of a run depend on: its model (backbone, size, teacher, method and options; of the distiller's
    options not the loss weights, :func:`_weight_option`, and of a ``*_ckpt`` path only whether it is given), batch,
    the encoder cache and the dataset's task; seeds, datasets of one task, λ grids and the recipe's scalars share a
    count."""
    info = dataset_info(run.dataset)
    distill = {k: bool(v) if k.endswith("_ckpt") else v for k, v in run.distill.items() if not _weight_option(k, v)}
    wanted = [
        run.backbone,
        run.teacher,
        run.method,
        sorted(run.peft.items()),
        sorted(distill.items()),
        run.protocol,
        run.task,
    ]
    wanted += [(run.train.batch_size, run.train.prompt, run.data.encoder_cache, run.data.preprocess)]
    wanted += [(info.task, info.classes, run.dataset if info.task != "binary" else "")]
    return repr(wanted)


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
    """``run`` with random weights (no checkpoint read: the backbone's, the teacher's, nor a method option's
    ``*_ckpt``, e.g. InfoSAM-T's relation module from another run) and without the execution switches that move
    tensors."""
    r = copy.deepcopy(run)
    r.peft = {k: None if k.endswith("_ckpt") else v for k, v in r.peft.items()}
    r.distill = {k: None if k.endswith("_ckpt") else v for k, v in r.distill.items()}
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


def blank_label_maps(run: RunConfig, parts: TrainParts) -> dict[str, Any]:
    """A collated semantic batch (``bench.tasks.semantic.LabelMapItems``' keys) of blank label maps: the stand-in
    when the task's dataset is absent (the values do not change the FLOPs)."""
    size = parts.student.img_size
    items = [
        {
            "image": torch.zeros(3, size, size),
            "target": torch.zeros(size, size, dtype=torch.long),
            "valid": True,
            "index": i,
            "epoch": 0,
            "name": f"plan{i}",
            "size": torch.tensor([size, size]),
        }
        for i in range(run.train.batch_size)
    ]
    assert parts.task is not None
    return parts.task.collate(items)


def _batch(run: RunConfig, parts: TrainParts) -> dict[str, Any]:
    """The step's batch: a binary one, or ``batch_size`` items of the task's dataset (the real split; blank label
    maps when it is absent)."""
    if parts.task is None:
        return binary_batch(run, parts.student.img_size)
    try:
        split = DATASETS.get(run.dataset)("train", run.data)
    except (DatasetError, OSError):
        return blank_label_maps(run, parts)
    items = parts.task.dataset(split, parts.student, run.seed, train=True)
    return parts.task.collate([items[i % len(items)] for i in range(run.train.batch_size)])


def expert_flops(shape: tuple[int, ...], num_experts: int, passes: int) -> float:
    """Expected FLOPs of a top-1 mixture of M conv experts on (N, r, H, W) maps under uniform routing: expert i
    (i = 1..M) is a 3×3 conv r → r on the ×i up-sampled (iH, iW) map, 2·9·r²·i²·H·W per map; each map goes to
    one expert with probability 1/M, so N · 18·r²·H·W · (M + 1)(2M + 1)/6. ``passes``: 1 forward, + 1 for the
    input gradient, + 1 for the weight gradient (the counter's convolution backward)."""
    n, r, h, w = shape
    return passes * n * 18 * r * r * h * w * (num_experts + 1) * (2 * num_experts + 1) / 6


def _is_expert_mixture(module: torch.nn.Module) -> bool:
    """A top-1 mixture of conv experts (Conv-LoRA's ``MoEConv``): ``gating``, ``num_experts``, conv ``experts``."""
    experts = getattr(module, "experts", None)
    return (
        callable(getattr(module, "gating", None))
        and getattr(module, "k", None) == 1
        and isinstance(experts, torch.nn.ModuleList)
        and all(isinstance(getattr(e, "conv", None), torch.nn.Conv2d) for e in experts)
    )


@contextmanager
def value_free(parts: TrainParts, tally: list[float]) -> Iterator[None]:
    """Stand-ins for the parts of a step that read tensor values (module docstring): each expert mixture runs
    its gate and adds :func:`expert_flops` to ``tally`` instead of dispatching; the task losses become the mean
    of the logits."""
    mixtures = [m for m in parts.student.modules() if _is_expert_mixture(m)]

    def routed(self: Any, x: torch.Tensor, noisy: bool, noise: Optional[torch.Tensor] = None) -> Any:
        gates, load = self.gating(x, noisy, noise)
        weight = self.experts[0].conv.weight
        passes = 1 + (int(x.requires_grad) + int(weight.requires_grad) if torch.is_grad_enabled() else 0)
        tally.append(expert_flops(tuple(x.shape), self.num_experts, passes))
        balance = gates.sum(0).float().var() + load.float().var()  # the load-balancing loss (no matmul)
        return torch.zeros_like(x), balance, gates

    def mean_logits(masks: torch.Tensor, *rest: Any) -> dict[str, torch.Tensor]:
        logits = [masks, *(t for t in rest[:1] if isinstance(t, torch.Tensor) and t.is_floating_point())]
        return {"loss": torch.stack([t.float().mean() for t in logits]).sum()}

    with ExitStack() as stack:
        for m in mixtures:
            m.forward = types.MethodType(routed, m)
            stack.callback(m.__dict__.pop, "forward", None)
        for name in ("ce_dice_terms", "m2f_terms"):
            stack.enter_context(mock.patch.object(semantic, name, mean_logits))
        yield


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
        context = DistillContext.between(student, teacher)
        parts.distiller = hw.to_fake(hw.build_light(lambda: spec.distiller_cls(distill_options, context)), mode)
        parts.teacher = teacher
        parts.teacher_encoder = CachedEncoder(teacher, None, tuple(parts.distiller.teacher_blocks))
        blocks |= set(parts.distiller.student_blocks)
    parts.student_encoder = CachedEncoder(student, None, tuple(blocks))
    return parts


def _count(fn: Any, tally: list[float]) -> hw.Count:
    """:func:`bench.hardware.flops.count` of ``fn()``, its FLOPs plus what the stand-ins of :func:`value_free`
    added to ``tally``."""
    tally.clear()
    counted = hw.count(fn)
    return replace(counted, flops=counted.flops + sum(tally))


def _prefix_flops(
    model: Backbone, encoder: CachedEncoder, images: torch.Tensor, cached: bool, tally: list[float]
) -> float:
    """Forward FLOPs of the encoder steps the cache would serve (0 without the cache)."""
    stop = model.frozen_prefix() if cached else 0
    if stop == 0:
        return 0
    with torch.no_grad():
        return _count(lambda: model.encode_prefix(images, stop, encoder.blocks), tally).flops


def _params_bytes(*modules: Optional[torch.nn.Module]) -> int:
    return sum(p.numel() * 4 for m in modules if m is not None for p in m.parameters())


def count_cost(run: RunConfig) -> Cost:
    """Count one training step and one scored image of ``run`` (see the module docstring)."""
    r = architecture_only(run)
    cached = run.data.encoder_cache
    mode = hw.fake_mode()
    with _quiet():
        parts = _parts(r, mode)
    tally: list[float] = []
    with _quiet(), mode, value_free(parts, tally):
        batch = _batch(r, parts)
        use_box = None if r.train.prompt == "none" else True
        trainable = trainable_parameters(parts.student) + (
            trainable_parameters(parts.distiller) if parts.distiller is not None else 0
        )

        def step() -> None:
            terms = compute_loss(parts, batch, use_box, CPU, r.train)
            torch.stack([t.float() for t in terms.values()]).sum().backward()

        full = _count(step, tally) if trainable else None
        images = batch["image"]
        s_prefix = _prefix_flops(parts.student, parts.student_encoder, images, cached, tally)
        t_prefix = 0.0
        if parts.teacher is not None and parts.teacher_encoder is not None:
            t_prefix = _prefix_flops(parts.teacher, parts.teacher_encoder, images, cached, tally)
        params = _params_bytes(parts.student, parts.teacher, parts.distiller)
        parts.distiller = None  # scoring runs the student only, without gradients
        parts.student.requires_grad_(False)
        parts.student.eval()  # as scoring runs it (a noisy gate, e.g. Conv-LoRA's, is deterministic there)
        evaluation = _count(lambda: probe_features(parts, batch, use_box, CPU, r.train), tally).flops
    b = r.train.batch_size
    step_flops = float(full.flops - s_prefix - t_prefix) if full is not None else 0.0
    eval_flops = float(evaluation - s_prefix) / b
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
