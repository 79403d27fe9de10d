"""One training loop for every method: structure loss + whatever loss terms the distiller returns.

The loop never looks at a method's name. It trains the parameters that ``requires_grad`` marks
after the PEFT method was applied, plus the distiller's own parameters; it checkpoints every epoch
and resumes from the last checkpoint; a non-finite loss stops the run with :class:`NonFiniteLossError`.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
from torch import nn
from torch.profiler import record_function
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from bench.backbones import Backbone, Prompts
from bench.config import TrainConfig
from bench.contracts.distill import Distiller, Features
from bench.contracts.peft import PeftMethod
from bench.data.batches import (
    PromptedDataset,
    batch_prompts,
    collate,
    epoch_order,
    steps_per_epoch,
    take,
    use_box_for_batch,
)
from bench.data.encoders import CachedEncoder
from bench.eval.selection import EpochSelector
from bench.fileio import atomic_torch_save
from bench.hardware.accel import autocast_for, images_to
from bench.hardware.memory import micro_batches
from bench.tasks import Task
from bench.tasks.base import teacher_features
from bench.train import distributed
from bench.train.losses import structure_loss
from bench.train.param_groups import decay_exempt, param_groups
from bench.train.resume import resume

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run is marked failed."""


@dataclass
class TrainParts:
    """What the loop trains and with which frozen helpers."""

    student: Backbone
    student_encoder: CachedEncoder
    peft: Optional[PeftMethod] = None
    distiller: Optional[Distiller] = None
    teacher: Optional[Backbone] = None
    teacher_encoder: Optional[CachedEncoder] = None
    ddp: Optional[nn.Module] = None  # under DDP: the student and distiller wrapped (bench/train/distributed.py)
    task: Optional[Task] = None  # a semantic / instances dataset's task (bench/tasks); None = the one-mask path

    def trainable(self) -> list[nn.Parameter]:
        params = [p for p in self.student.parameters() if p.requires_grad]
        if self.distiller is not None:
            params += [p for p in self.distiller.parameters() if p.requires_grad]
        return params

    def decay_exempt(self) -> list[nn.Parameter]:
        """Trainable parameters of the student and the distiller that ``train.weight_decay_groups=automm`` does
        not decay (:mod:`bench.train.param_groups`)."""
        modules: list[nn.Module] = [self.student]
        if self.distiller is not None:
            modules.append(self.distiller)
        return decay_exempt(modules)

    def state(self) -> dict[str, Any]:
        """Trainable student tensors and the distiller's state (what a checkpoint must restore)."""
        student = {n: p.detach().clone() for n, p in self.student.named_parameters() if p.requires_grad}
        distiller = self.distiller.state_dict() if self.distiller is not None else {}
        return {"student": student, "distiller": distiller}

    def load_state(self, state: dict[str, Any]) -> None:
        params = dict(self.student.named_parameters())
        for name, value in state["student"].items():
            params[name].data.copy_(value)
        if self.distiller is not None:
            self.distiller.load_state_dict(state["distiller"])


@dataclass
class TrainResult:
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    skipped_empty: int = 0
    seconds: float = 0.0
    data_seconds: float = 0.0  # waiting for the loader (this process's epochs only, not resumed ones)
    steps: int = 0  # optimizer steps taken in this process (not resumed ones)

    @property
    def data_fraction(self) -> float:
        """Share of the training wall time spent waiting for batches."""
        return self.data_seconds / self.seconds if self.seconds > 0 else 0.0


def model_features(parts: TrainParts, images: torch.Tensor, prompts: Prompts) -> tuple[Features, Optional[Features]]:
    """Student features, and the frozen teacher's (no grad) when there is a distiller."""
    with record_function("student.encoder"):
        z, blocks = parts.student_encoder(images)
    with record_function("student.decoder"):
        out = parts.student.decode(z, prompts, blocks)
    embedding = out.embedding if out.embedding is not None else z  # as the decoder saw it (LST adapts it)
    student = Features(embedding, out.mask_token, out.logits, out.iou, blocks)
    if parts.distiller is None:
        return student, None
    with record_function("teacher"):
        return student, teacher_features(parts, images, prompts)


def compute_loss(
    parts: TrainParts, batch: dict[str, Any], use_box: Optional[bool], device: torch.device, cfg: TrainConfig
) -> dict[str, torch.Tensor]:
    """Named loss terms for one batch: ``seg`` (or the task's terms, :mod:`bench.tasks`), the PEFT method's and
    the distiller's."""
    if parts.task is not None:
        with record_function("loss.task"):
            terms, student, teacher = parts.task.loss_terms(parts, batch, use_box, device, cfg)
    else:
        images = images_to(batch["image"], device, cfg.channels_last)
        target = batch["target"].to(device, non_blocking=True)[:, None]
        student, teacher = model_features(parts, images, batch_prompts(batch, use_box).to(device))
        with record_function("loss.structure"):
            terms = {"seg": structure_loss(parts.student.upscale(student.logits), target, cfg.structure_loss)}
    if parts.peft is not None:
        terms.update(parts.peft.loss_terms())
    if teacher is not None:
        with record_function("loss.distiller"):
            # batch-level losses see the whole batch under DDP (an identity on one process)
            gathered = distributed.gather_features(student), distributed.gather_features(teacher)
            terms.update(parts.distiller(*gathered, distributed.gather_batch(batch)))
    return terms


def train_step(
    parts: TrainParts,
    batch: dict[str, Any],
    use_box: Optional[bool],
    device: torch.device,
    cfg: TrainConfig,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward, backward and optimizer update of one batch; returns the total loss and its terms (on the
    device: no host synchronisation). Each phase is a named profiler range (``python -m tools.profile``)."""
    optimizer.zero_grad(set_to_none=True)
    chunks = micro_batches(batch, cfg.grad_accumulation) if cfg.grad_accumulation > 1 else [batch]
    losses, chunk_terms, n = [], [], len(batch["valid"])
    for i, chunk in enumerate(chunks):
        # under DDP, gradients are all-reduced once, after the last micro-batch
        sync = parts.ddp.no_sync() if parts.ddp is not None and i < len(chunks) - 1 else nullcontext()
        with sync:
            with autocast_for(device, cfg.precision):
                if parts.ddp is not None:
                    terms = parts.ddp(chunk, use_box, device, cfg)
                else:
                    terms = compute_loss(parts, chunk, use_box, device, cfg)
            loss = torch.stack([t.float() for t in terms.values()]).sum()
            with record_function("step.backward"):
                (loss * (len(chunk["valid"]) / n)).backward()  # per-sample means: weighted by size
        losses.append(loss.detach() * (len(chunk["valid"]) / n))
        chunk_terms.append({k: t.detach().float() * (len(chunk["valid"]) / n) for k, t in terms.items()})
    if len(chunks) > 1:  # the batch's values: size-weighted sums of the micro-batches'
        loss = torch.stack(losses).sum()
        terms = {k: torch.stack([t[k] for t in chunk_terms]).sum() for k in chunk_terms[0]}
    with record_function("step.optimizer"):
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
    return loss, terms


def probe_features(
    parts: TrainParts, probe: dict[str, Any], use_box: Optional[bool], device: torch.device, cfg: TrainConfig
) -> tuple[Features, Optional[Features]]:
    """Features of a fixed batch without gradients (for per-epoch exports such as relation maps)."""
    with torch.no_grad(), autocast_for(device, cfg.precision):
        if parts.task is not None:
            _, student, teacher = parts.task.loss_terms(parts, probe, use_box, device, cfg)
            return student, teacher
        images = images_to(probe["image"], device, cfg.channels_last)
        return model_features(parts, images, batch_prompts(probe, use_box).to(device))


def make_optimizer(
    cfg: TrainConfig,
    params: list[nn.Parameter],
    n_samples: int,
    n_steps: int,
    exempt: Iterable[nn.Parameter] = (),
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam or AdamW (``train.optimizer``, ``train.weight_decay``) and the per-step schedule
    (``train.schedule``): cosine annealing to ``min_lr`` over :func:`cosine_horizon` steps, or linear
    ("polynomial, power 1") decay to ``min_lr`` over the run's steps. Under ``train.weight_decay_groups=automm``
    the parameters of ``exempt`` (:meth:`TrainParts.decay_exempt`) form a second group without weight decay."""
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    groups = param_groups(cfg.weight_decay_groups, params, exempt, cfg.weight_decay)
    optimizer = opt_cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule == "poly":
        assert cfg.epochs is not None
        total, floor = cfg.epochs * n_steps, cfg.min_lr / cfg.lr

        def linear(step: int) -> float:
            return floor + (1 - floor) * max(0.0, 1 - step / total)

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, linear)
    horizon = cosine_horizon(cfg, n_samples, n_steps)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=horizon, eta_min=cfg.min_lr)


def cosine_horizon(cfg: TrainConfig, n_samples: int, n_steps: int) -> int:
    """``T_max`` of the cosine schedule: the run's number of steps (``"steps"``: the lr reaches ``min_lr`` on
    the last step) or the public InfoSAM code's ``epochs * (N // B + 1)`` (``"infosam"``: one step per epoch
    more than drop_last takes, so the lr stops short of ``min_lr``)."""
    assert cfg.epochs is not None
    if cfg.cosine_horizon == "infosam":
        return cfg.epochs * (n_samples // cfg.batch_size + 1)
    return cfg.epochs * n_steps


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    if distributed.world().is_main:  # under DDP the ranks hold the same state: rank 0 writes it
        atomic_torch_save(path, payload)


@dataclass
class _Loop:
    """What the steps of one :func:`train` call share."""

    parts: TrainParts
    data: PromptedDataset
    cfg: TrainConfig
    seed: int
    device: torch.device
    checkpoint: Path
    desc: str
    on_log: Optional[Callable[[dict[str, Any]], None]]
    probe: Optional[tuple[dict[str, Any], bool]]
    selector: Optional[EpochSelector]
    run_id: Optional[str]
    params: list[nn.Parameter] = field(init=False)  # what the optimizer updates
    result: TrainResult = field(default_factory=TrainResult)
    # set by _setup:
    n_steps: int = field(init=False)
    optimizer: torch.optim.Optimizer = field(init=False)
    scheduler: torch.optim.lr_scheduler.LRScheduler = field(init=False)
    rank_batch: int = field(init=False)

    def __post_init__(self) -> None:
        self.params = self.parts.trainable()


def train(
    parts: TrainParts,
    data: PromptedDataset,
    cfg: TrainConfig,
    seed: int,
    device: torch.device,
    checkpoint: Path,
    desc: str = "train",
    on_log: Optional[Callable[[dict[str, Any]], None]] = None,
    probe: Optional[tuple[dict[str, Any], bool]] = None,
    selector: Optional[EpochSelector] = None,
    run_id: Optional[str] = None,
) -> TrainResult:
    """Train for ``cfg.epochs`` epochs, resuming from ``checkpoint`` when it exists.

    Args:
        probe: A fixed batch and its prompt kind (box or points); after every epoch the distiller's
            ``on_epoch_end`` may ask for the features of this batch.
        selector: Scores candidate epochs for the checkpoint choice (``eval.select``) after each epoch,
            before its checkpoint is written; its state is part of the checkpoint.
        run_id: The run's name, recorded in the checkpoint; a checkpoint of another run is refused
            (:mod:`bench.train.resume`), a damaged one is moved aside and training starts from scratch.
    """
    loop = _Loop(parts, data, cfg, seed, device, checkpoint, desc, on_log, probe, selector, run_id)
    result = loop.result
    if not loop.params or cfg.epochs == 0:
        log.info("%s: nothing to train", desc)
        return result
    start_epoch = _setup(loop)
    for epoch in range(start_epoch, cfg.epochs):
        if selector is not None and selector.stop_early():
            log.info("%s: no better validation score in %s epochs: stopped after %d", desc, selector.patience, epoch)
            break
        _run_epoch(loop, epoch)
        _end_epoch(loop, epoch)
    if result.skipped_empty:
        log.warning("%s: skipped %d training samples with empty masks", desc, result.skipped_empty)
    return result


def _setup(loop: _Loop) -> int:
    """Optimizer, schedule and per-rank batch size into ``loop``, the checkpoint's state restored, the modules
    in their training modes (wrapped for DDP); returns the epoch to start from."""
    cfg, parts = loop.cfg, loop.parts
    loop.n_steps = _epoch_steps(len(loop.data), cfg)
    exempt = parts.decay_exempt() if cfg.weight_decay_groups != "all" else []
    loop.optimizer, loop.scheduler = make_optimizer(cfg, loop.params, len(loop.data), loop.n_steps, exempt)
    loop.rank_batch = distributed.check_batch(cfg.batch_size, distributed.world().world_size)
    start_epoch = _resume(loop)
    parts.student.eval()  # frozen BatchNorm statistics; SAM has no dropout
    if parts.distiller is not None:
        parts.distiller.train()
    parts.ddp = distributed.wrap_ddp(parts, compute_loss, loop.device)
    return start_epoch


def _epoch_steps(n_samples: int, cfg: TrainConfig) -> int:
    """Optimizer steps per epoch (capped by ``train.max_steps_per_epoch``); fewer samples than a batch is an error."""
    n_steps = steps_per_epoch(n_samples, cfg.batch_size)
    if cfg.max_steps_per_epoch:
        n_steps = min(n_steps, cfg.max_steps_per_epoch)
    if n_steps == 0:
        raise ValueError(f"training split has {n_samples} samples, fewer than one batch of {cfg.batch_size}")
    return n_steps


def _resume(loop: _Loop) -> int:
    """Restore the last checkpoint's state into the loop's parts, optimizer, scheduler, selector and result;
    returns the epoch to start from (0 without a usable checkpoint)."""
    result = loop.result
    state = resume(loop.checkpoint, loop.run_id, loop.parts, loop.optimizer, loop.scheduler, loop.selector)
    if state is None:
        return 0
    start_epoch, result.log_rows = state["epoch"], state["log"]
    result.skipped_empty = state.get("skipped_empty", 0)
    log.info("%s: resumed from %s after epoch %d", loop.desc, loop.checkpoint, start_epoch)
    return start_epoch


def _run_epoch(loop: _Loop, epoch: int) -> None:
    """Train one epoch: its batches in the epoch's order, a step each (timed into ``loop.result``)."""
    cfg = loop.cfg
    loop.data.epoch = epoch
    order = epoch_order(len(loop.data), loop.seed, epoch)[: loop.n_steps * cfg.batch_size]
    loader = DataLoader(
        Subset(loop.data, distributed.shard_order(order, cfg.batch_size)),
        batch_size=loop.rank_batch,
        shuffle=False,
        drop_last=True,
        num_workers=cfg.num_workers,
        collate_fn=loop.parts.task.collate if loop.parts.task is not None else collate,
        pin_memory=loop.device.type == "cuda",
    )
    desc = f"{loop.desc} ep {epoch + 1}/{cfg.epochs}"
    bar = tqdm(loader, total=loop.n_steps, desc=desc, leave=False, dynamic_ncols=True)
    t_epoch = time.perf_counter()
    for step, batch in _epoch_batches(loop, bar, t_epoch):
        _train_batch(loop, epoch, step, batch, bar)
    loop.result.seconds += time.perf_counter() - t_epoch


def _epoch_batches(loop: _Loop, bar: Iterable[dict[str, Any]], t_ready: float) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(step, batch)`` for the batches to train on, without their empty-mask samples (see :func:`_keep_valid`);
    the time spent waiting for the loader is added to ``loop.result.data_seconds``."""
    for step, batch in enumerate(bar):
        loop.result.data_seconds += time.perf_counter() - t_ready
        kept = _keep_valid(loop, step, batch)
        if kept is not None:
            yield step, kept
        t_ready = time.perf_counter()


def _keep_valid(loop: _Loop, step: int, batch: dict[str, Any]) -> Optional[dict[str, Any]]:
    """``batch`` without the samples whose mask is empty (no box or point on them), or None to skip it.

    Under DDP the ranks' batches must keep equal sizes: when they differ, the global batch's valid samples are
    shared out again. A global batch of fewer than two valid samples is skipped (batch-level losses need two).
    """
    valid = batch["valid"]
    if loop.cfg.prompt != "none" and not bool(valid.all()):  # no box or point on an empty mask
        loop.result.skipped_empty += int((~valid).sum())
        keep = valid.nonzero().flatten().tolist()
    else:
        keep = list(range(len(valid)))
    kept = distributed.all_equal(len(keep))  # DDP: the ranks' batches must keep equal sizes
    if sum(kept) >= len(valid) * len(kept):  # no sample of the global batch has an empty mask
        return batch
    if sum(kept) < 2:  # batch-level losses need two samples
        return None
    if len(set(kept)) == 1:
        return take(batch, keep)
    full, mine, left = distributed.balance_valid(batch)  # unequal over the ranks: share the valid samples out
    if not mine:
        return None
    if left:
        log.warning(
            "%s: batch %d keeps %d valid samples over %d ranks; %d not trained on",
            loop.desc,
            step,
            sum(kept),
            len(kept),
            left,
        )
    return take(full, mine)


def _train_batch(loop: _Loop, epoch: int, step: int, batch: dict[str, Any], bar: tqdm) -> None:
    """One optimizer and scheduler step on ``batch``; every ``log_every`` steps (and the epoch's last) a log row."""
    cfg = loop.cfg
    use_box = None if cfg.prompt == "none" else use_box_for_batch(loop.seed, epoch, step, cfg.box_prob)
    loss, terms = train_step(loop.parts, batch, use_box, loop.device, cfg, loop.optimizer, loop.params)
    loop.result.steps += 1
    loop.scheduler.step()
    last = step == loop.n_steps - 1
    if step % cfg.log_every == 0 or last:
        _log_step(loop, epoch, step, loss, terms, bar)


def _log_step(
    loop: _Loop, epoch: int, step: int, loss: torch.Tensor, terms: dict[str, torch.Tensor], bar: tqdm
) -> None:
    """Append the step's log row (the loss and its terms; :class:`NonFiniteLossError` if not finite)."""
    # host sync only when logging; under DDP the mean over ranks (= the global batch's loss)
    values = distributed.mean_over_ranks(
        {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
    )
    value = values.pop("loss")
    if not math.isfinite(value):
        raise NonFiniteLossError(f"{loop.desc}: loss is {value} at epoch {epoch + 1} step {step + 1} (terms: {values})")
    row = {"epoch": epoch + 1, "step": step + 1, "lr": loop.scheduler.get_last_lr()[0], "loss": value}
    row.update(values)
    loop.result.log_rows.append(row)
    bar.set_postfix(loss=f"{value:.4f}")
    if loop.on_log is not None:
        loop.on_log({**row, "epochs": loop.cfg.epochs, "steps": loop.n_steps})


def _end_epoch(loop: _Loop, epoch: int) -> None:
    """After an epoch: the selector's scoring, the checkpoint (on every rank before any goes on) and the
    distiller's ``on_epoch_end`` with the probe batch."""
    parts, selector, result = loop.parts, loop.selector, loop.result
    if selector is not None:
        selector.after_epoch(epoch + 1)
    save_checkpoint(
        loop.checkpoint,
        {
            "epoch": epoch + 1,
            "run": loop.run_id,
            "parts": parts.state(),
            "optimizer": loop.optimizer.state_dict(),
            "scheduler": loop.scheduler.state_dict(),
            "log": result.log_rows,
            "skipped_empty": result.skipped_empty,
            "selection": selector.state_dict() if selector is not None else {},
        },
    )
    distributed.barrier()  # every rank past the epoch only once its checkpoint is on disk
    if parts.distiller is not None and loop.probe is not None and distributed.world().is_main:
        batch, use_box = loop.probe
        parts.distiller.on_epoch_end(
            epoch + 1, lambda: probe_features(parts, batch, use_box, loop.device, loop.cfg), loop.checkpoint.parent
        )
