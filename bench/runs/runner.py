"""Execute one run end to end: build, train, evaluate, write results. Called by every launcher."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from bench.backbones import Backbone, build_backbone
from bench.config import BackboneConfig, ConfigError, RunConfig, TrainConfig
from bench.config.protocols import get_protocol
from bench.contracts.dataset import DATASETS
from bench.contracts.distill import DistillContext
from bench.contracts.methods import method_options
from bench.contracts.peft import PeftMethod, trainable_parameters
from bench.data.batches import PromptedDataset, collate, eval_points_split
from bench.data.encoders import CachedEncoder
from bench.data.masks import MaskKeeper
from bench.eval.evaluate import evaluate
from bench.eval.metrics import BASE_DEFINITION
from bench.eval.selection import EpochSelector, selection_text
from bench.fileio import atomic_write
from bench.hardware.accel import channels_last_convs, compile_backbone, compute_tag, pick_device
from bench.hardware.memory import check_accumulation, checkpoint_trainable_blocks, peak_memory_mb, reset_peak
from bench.phases import CLOCK
from bench.runs.provenance import provenance_record
from bench.runs.results import FollowerRunDir, RunBusyError, RunDir
from bench.runs.tboard import RunEvents
from bench.tasks import Task, build_task
from bench.tasks.base import EvalSettings
from bench.train import distributed
from bench.train.trainer import TrainParts, TrainResult, train

log = logging.getLogger(__name__)


def teacher_config(run: RunConfig) -> BackboneConfig:
    t = run.teacher
    if t.backbone is None:
        return BackboneConfig(
            name=run.backbone.name,
            checkpoint=t.checkpoint or run.backbone.checkpoint,
            img_size=t.img_size or run.backbone.img_size,
            random_init=run.backbone.random_init and not t.checkpoint,  # a random student's teacher is random too
            checkpoints_dir=run.backbone.checkpoints_dir,
        )
    return BackboneConfig(
        name=t.backbone,
        checkpoint=t.checkpoint,
        img_size=t.img_size,
        random_init=run.backbone.random_init and not t.checkpoint,
        checkpoints_dir=run.backbone.checkpoints_dir,
    )


def _place(model: Backbone, run: RunConfig, device: torch.device) -> Backbone:
    """``model`` on ``device``, with the speed switches of ``train`` applied (``channels_last``, ``compile``)."""
    model = model.to(device)
    if run.train.channels_last:
        channels_last_convs(model)
    if run.train.compile:
        compile_backbone(model, run.train.compile_backend)
    return model


def build_student(run: RunConfig, task: Optional[Task] = None) -> tuple[Backbone, PeftMethod, list[str]]:
    """The run's student as every command rebuilds it: the seed set first (frozen random parts come out the same),
    the backbone, the task's decoder shape, the PEFT method, the task's head. Returns the student, the applied
    PEFT method and the modules it targets."""
    spec, peft_options, _ = method_options(run.method, run.peft, run.distill, run.protocol)
    torch.manual_seed(run.seed)
    student = build_backbone(run.backbone)
    student.preprocess = run.data.preprocess
    if task is not None:
        task.prepare_student(student)
    peft = spec.peft_cls(peft_options)
    targeted = peft.apply(student)
    if task is not None:
        task.attach_head(student)
    return student, peft, targeted


def build_parts(run: RunConfig, device: torch.device, task: Optional[Task] = None) -> TrainParts:
    """Student with its PEFT modules (and the task's head, :mod:`bench.tasks`), and the frozen teacher and
    distiller if the method has one."""
    spec, _, distill_options = method_options(run.method, run.peft, run.distill, run.protocol)
    student, peft, targeted = build_student(run, task)
    log.info(
        "%s: %s targets %d modules, %.3fM trainable parameters",
        run.method,
        spec.peft,
        len(targeted),
        trainable_parameters(student) / 1e6,
    )
    parts = TrainParts(student=_place(student, run, device), student_encoder=None, peft=peft, task=task)  # type: ignore[arg-type]
    cls = spec.distiller_cls
    cache_root = run.data.cache_dir if run.data.encoder_cache else None
    compute = compute_tag(device, run.train.precision, run.train.channels_last)  # part of the cache key
    student_blocks = set(peft.feature_blocks(student))
    if cls is not None:
        teacher = build_backbone(teacher_config(run))
        teacher.preprocess = run.data.preprocess
        teacher.requires_grad_(False)
        teacher = _place(teacher, run, device)
        if teacher.img_size != student.img_size:
            raise ConfigError(f"teacher input size {teacher.img_size} differs from the student's {student.img_size}")
        context = DistillContext.between(student, teacher)
        parts.distiller = cls(distill_options, context).to(device)
        parts.teacher = teacher
        parts.teacher_encoder = CachedEncoder(
            teacher, cache_root, tuple(parts.distiller.teacher_blocks), run.data.cache_dtype, compute
        )
        student_blocks |= set(parts.distiller.student_blocks)
    parts.student_encoder = CachedEncoder(student, cache_root, tuple(student_blocks), run.data.cache_dtype, compute)
    check_accumulation(run.train.grad_accumulation, run.train.batch_size, spec.distiller_cls, run.method)
    if run.train.grad_checkpoint:
        checkpoint_trainable_blocks(student)
    return parts


def execute_run(run: RunConfig, runs_dir: str | Path) -> dict[str, Any]:
    """Train and evaluate ``run`` into its directory; returns the metrics record.

    A complete run (``metrics.json`` present) is returned as it is. A partial one resumes from its
    last epoch checkpoint. Under DDP (bench/train/distributed.py) rank 0 owns the directory (lock, log, results)
    and tells the other ranks whether to run; they execute the same run without writing.
    """
    if not distributed.setup(run.train.device).is_main:
        decision = distributed.broadcast(None)
        if decision == "busy":
            raise RunBusyError(f"run {RunDir(runs_dir, run).name} is being executed by another launcher")
        if decision == "complete":
            return RunDir(runs_dir, run).read_metrics()
        return _execute(run, FollowerRunDir(runs_dir, run))
    rd = RunDir(runs_dir, run)
    if rd.is_complete():
        log.info("%s: complete, skipped", rd.name)
        distributed.broadcast("complete")
        return rd.read_metrics()
    try:
        with rd.lock():  # RunBusyError if another launcher is executing this run
            if rd.is_complete():  # finished by another process while we were starting
                log.info("%s: complete, skipped", rd.name)
                distributed.broadcast("complete")
                return rd.read_metrics()
            distributed.broadcast("run")
            return _execute_locked(run, rd)
    except RunBusyError:
        distributed.broadcast("busy")
        raise


def _execute_locked(run: RunConfig, rd: RunDir) -> dict[str, Any]:
    rd.start()
    handler = logging.FileHandler(rd.log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))  # the run's log keeps INFO even when the console does not
    try:
        return _execute(run, rd)
    except Exception as err:
        _log_traceback(handler, rd.name)
        rd.write_failure(f"{err.__class__.__name__}: {err}")
        raise
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def _log_traceback(handler: logging.Handler, name: str) -> None:
    """Write the current exception's traceback to the run's log file only (the console gets one line)."""
    record = logging.LogRecord("bench.runs.runner", logging.ERROR, __file__, 0, "%s failed", (name,), sys.exc_info())
    handler.handle(record)


@dataclass
class RunContext:
    """What the steps of one run share: its config and directory, the device, the splits and the model parts.

    The prompted datasets and the mask keeper are set by :func:`_prompt_datasets`.
    """

    run: RunConfig
    rd: RunDir
    device: torch.device
    t0: float
    protocol: Any
    builder: Callable[..., Any]
    train_set: Any
    test_set: Any
    report_metrics: tuple[str, ...]
    parts: TrainParts
    train_data: PromptedDataset = field(init=False)
    test_data: PromptedDataset = field(init=False)
    prompt: str = field(init=False)
    use_box: Optional[bool] = field(init=False)
    n_pos: int = field(init=False)
    n_neg: int = field(init=False)
    keeper: MaskKeeper = field(init=False)
    events: RunEvents = field(init=False)  # the run's TensorBoard events (bench/runs/tboard.py)

    @property
    def info(self) -> Any:
        return self.test_set.info

    @property
    def progress(self) -> Path:
        """The live progress file (the last log row), removed when the run completes."""
        return self.rd.path / "progress.json"


def _execute(run: RunConfig, rd: RunDir) -> dict[str, Any]:
    """Build, train, evaluate and write the metrics record of ``run`` into ``rd``."""
    carried = {k: v for k, v in CLOCK.take().items() if k == "imports"}  # a job's first run: its imports
    ctx = _open_run(run, rd)
    ctx.events = RunEvents(rd.path, run.train.tensorboard and distributed.world().is_main)
    with CLOCK.phase("data"):
        _prompt_datasets(ctx)
    train_cfg = _train_config(ctx)
    selector = _epoch_selector(ctx, train_cfg)
    selector.on_scored = ctx.events.scorer(selector)
    with CLOCK.phase("train"):
        result = _train_run(ctx, train_cfg, selector)
    t1 = time.time()
    with CLOCK.phase("test_eval"):
        rows, means, extra = _final_scores(ctx, train_cfg, selector)
        also = _also_tested(ctx)
    phases = {"phases": {**carried, **CLOCK.take()}}
    record = _metrics_record(ctx, result, selector, rows, means, {**extra, **also, **phases}, t1)
    rd.write_metrics(record)
    ctx.events.finish(rd.path, record["metrics"], result.log_rows)
    ctx.progress.unlink(missing_ok=True)
    log.info("%s: done in %.1fs", rd.name, time.time() - ctx.t0)
    return record


def _open_run(run: RunConfig, rd: RunDir) -> RunContext:
    """The device, the protocol, the train and test splits and the model parts (peak memory reset after)."""
    device = distributed.rank_device(pick_device(run.train.device))
    t0 = time.time()
    protocol = get_protocol(run.protocol)
    builder = DATASETS.get(run.dataset)
    with CLOCK.phase("data"):
        train_set, test_set = builder("train", run.data), builder("test", run.data)
    info = test_set.info
    report_metrics = get_protocol(run.protocol).metrics_for(info.family, tuple(info.metrics))
    with CLOCK.phase("build"):
        parts = build_parts(run, device, build_task(info, run))
    reset_peak(device)
    return RunContext(run, rd, device, t0, protocol, builder, train_set, test_set, report_metrics, parts)


def _prompt_datasets(ctx: RunContext) -> None:
    """The prompted train and test datasets, the evaluation prompt kind and the mask keeper, into ``ctx``."""
    run, info, task = ctx.run, ctx.info, ctx.parts.task
    _eval_prompts(ctx, info)
    if task is not None:  # promptless (semantic) or one prompt per object (instances): the task's items
        ctx.train_data = task.dataset(ctx.train_set, ctx.parts.student, run.seed, train=True)
        ctx.test_data = _eval_dataset(ctx, ctx.test_set)
        if run.eval.keep_masks:
            log.info("%s: eval.keep_masks keeps binary masks only; the %s task keeps none", ctx.rd.name, task.name)
        ctx.keeper = MaskKeeper(0, ctx.test_set, ctx.parts.student, ctx.use_box, run.eval.resolution)
        return
    ctx.train_data = PromptedDataset(
        ctx.train_set,
        ctx.parts.student,
        run.seed,
        train=True,
        box_jitter=run.train.box_jitter,
        num_pos=run.train.num_points,
        jitter_form=run.train.box_jitter_form,
        hflip=run.train.hflip,
    )
    ctx.test_data = _eval_dataset(ctx, ctx.test_set)
    ctx.keeper = MaskKeeper(run.eval.keep_masks, ctx.test_set, ctx.parts.student, ctx.use_box, run.eval.resolution)


def _eval_prompts(ctx: RunContext, info: Any) -> None:
    """The evaluation prompt kind and point split for a test set of ``info`` (``eval.*`` or its protocol)."""
    run = ctx.run
    ctx.prompt = run.eval.prompt or info.eval_prompt
    ctx.use_box = {"box": True, "points": False, "none": None}[ctx.prompt]
    ctx.n_pos, ctx.n_neg = eval_points_split(run.eval.num_points or info.eval_points)


def _eval_dataset(ctx: RunContext, split_set: Any) -> PromptedDataset:
    """``split_set`` with the evaluation prompts (``eval.box_jitter``, the eval points), or the task's items."""
    if ctx.parts.task is not None:
        return ctx.parts.task.dataset(split_set, ctx.parts.student, ctx.run.seed, train=False)
    return PromptedDataset(
        split_set,
        ctx.parts.student,
        ctx.run.seed,
        train=False,
        box_jitter=ctx.run.eval.box_jitter,
        num_pos=ctx.n_pos,
        num_neg=ctx.n_neg,
        jitter_form=ctx.run.eval.box_jitter_form,
    )


def _score(
    ctx: RunContext, data: PromptedDataset, what: str, only: Optional[tuple[str, str]] = None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Per-image rows and metric means of the student on ``data``; masks are kept on the test set only.
    ``only=(definition, metric)``: that metric alone (a binary run's validation candidates)."""
    run, task = ctx.run, ctx.parts.task
    if task is not None:
        return distributed.sharded_evaluate(
            lambda shard: task.evaluate(
                ctx.parts.student,
                ctx.parts.student_encoder,
                shard,
                ctx.device,
                EvalSettings(
                    run.eval.batch_size,
                    f"{ctx.rd.name} {what}",
                    run.train.precision,
                    run.train.channels_last,
                    run.eval.resolution,
                ),
            ),
            data,
        )
    return distributed.sharded_evaluate(  # under DDP: a shard per rank, rows gathered in order
        lambda shard: evaluate(
            ctx.parts.student,
            ctx.parts.student_encoder,
            shard,
            ctx.use_box,
            ctx.device,
            run.eval.batch_size,
            desc=f"{ctx.rd.name} {what}",
            precision=run.train.precision,
            channels_last=run.train.channels_last,
            resolution=run.eval.resolution,
            keep=ctx.keeper if data is ctx.test_data and run.eval.keep_masks > 0 else None,
            only=only,
        ),
        data,
    )


def _train_config(ctx: RunContext) -> TrainConfig:
    """``train`` with the dataset's number of epochs when the run gives none."""
    train_cfg = ctx.run.train
    if train_cfg.epochs is None:
        train_cfg = dataclasses.replace(train_cfg, epochs=ctx.info.epochs)
    return train_cfg


def _epoch_selector(ctx: RunContext, train_cfg: TrainConfig) -> EpochSelector:
    """The checkpoint choice of ``eval.select``, scoring the validation or the test split after each epoch."""
    run = ctx.run
    selector = EpochSelector(
        rule=run.eval.select,
        epochs=int(train_cfg.epochs),
        k=run.eval.select_epochs,
        metric=ctx.parts.task.selection_metric if ctx.parts.task is not None else ctx.report_metrics[0],
        definition=ctx.protocol.selection_metrics(run.eval.select),
        snapshot=ctx.parts.state,
        patience=run.eval.patience,
    )
    if run.eval.select == "val_best":
        with CLOCK.phase("data"):
            val_data = _eval_dataset(ctx, ctx.builder("val", run.data))
        if len(val_data) == 0:
            log.warning("%s: %s has no validation split; the last epoch is reported", ctx.rd.name, run.dataset)
            selector.rule = "last"
        # a candidate epoch is compared by one number: only that metric is scored (bench.eval.evaluate.OneMetric)
        selector.evaluate = lambda: _timed_score(ctx, val_data, "val", (selector.definition, selector.metric))
    elif run.eval.select == "test_last":
        selector.evaluate = lambda: _timed_score(ctx, ctx.test_data, "test")
    return selector


def _timed_score(
    ctx: RunContext, data: PromptedDataset, what: str, only: Optional[tuple[str, str]] = None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """:func:`_score` of a candidate epoch, timed as ``val_selection`` (taken off the training phase)."""
    with CLOCK.phase("val_selection"):
        return _score(ctx, data, what, only)


def _train_run(ctx: RunContext, train_cfg: TrainConfig, selector: EpochSelector) -> TrainResult:
    """Train (resuming from the run's checkpoint), then write the train log and the distiller's artifacts."""
    run, rd, test_data = ctx.run, ctx.rd, ctx.test_data
    collate_fn = ctx.parts.task.collate if ctx.parts.task is not None else collate
    probe = collate_fn([test_data[i] for i in range(min(len(test_data), run.train.batch_size))])
    result = train(
        ctx.parts,
        ctx.train_data,
        train_cfg,
        run.seed,
        ctx.device,
        rd.checkpoint,
        desc=rd.name,
        on_log=_on_log(ctx) if distributed.world().is_main else None,
        probe=(probe, ctx.use_box),
        selector=selector,
        run_id=rd.name,
    )
    rd.write_train_log(result.log_rows)
    if ctx.parts.distiller is not None and distributed.world().is_main:
        ctx.parts.distiller.save_artifacts(rd.path)
    return result


def _on_log(ctx: RunContext) -> Callable[[dict[str, Any]], None]:
    """The trainer's log-row callback (rank 0): the live progress file and the TensorBoard events."""
    progress, events = ctx.progress, ctx.events

    def on_log(row: dict[str, Any]) -> None:
        atomic_write(progress, json.dumps(row).encode())
        events.log_row(row)

    return on_log


def _final_scores(
    ctx: RunContext, train_cfg: TrainConfig, selector: EpochSelector
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]], dict[str, Any]]:
    """The reported test rows and means (and the best-of-last extras of ``test_last``); writes per_image and
    the kept masks. Under ``val_best`` the chosen epoch's state is loaded first."""
    rd, parts = ctx.rd, ctx.parts
    extra: dict[str, Any] = {}
    if selector.rule == "test_last" and train_cfg.epochs in selector.rows:  # the last epoch was scored already
        rows, means = selector.rows[int(train_cfg.epochs)], selector.history[int(train_cfg.epochs)]
        for epoch, epoch_rows in selector.rows.items():
            rd.write_per_image(epoch_rows, epoch)
        best = selector.best_epoch
        assert best is not None
        extra["metrics_best_of_last"] = headline_metrics(selector.history[best], ctx.protocol.metrics)
        extra["metrics_by_definition_best_of_last"] = selector.history[best]
    else:
        if selector.rule == "val_best" and selector.best_state is not None:
            parts.load_state(selector.best_state)
        rows, means = _score(ctx, ctx.test_data, "eval")
    rd.write_per_image(rows)
    ctx.keeper.merge(distributed.gather_objects(ctx.keeper.kept))  # under DDP each rank scored its own shard
    rd.write_masks(ctx.keeper)  # rank 0 only
    return rows, means, extra


def _also_tested(ctx: RunContext) -> dict[str, Any]:
    """The reported checkpoint scored on every test set of ``eval.also_test`` (its own prompts and metrics, the
    run's ``data.*``): ``{"also_tested": {dataset: record}}`` and ``per_image.<dataset>.csv``; {} without any."""
    run = ctx.run
    if not run.eval.also_test:
        return {}
    out: dict[str, Any] = {}
    own = (ctx.test_data, ctx.prompt, ctx.use_box, ctx.n_pos, ctx.n_neg)
    try:
        for dataset in run.eval.also_test:
            test_set = DATASETS.get(dataset)("test", run.data)
            info = test_set.info
            problem = ctx.info.test_set_problem(info)
            if problem is not None:
                raise ConfigError(f"eval.also_test: {run.dataset}'s run cannot be tested on {dataset}: {problem}")
            _eval_prompts(ctx, info)
            ctx.test_data = _eval_dataset(ctx, test_set)
            rows, means = _score(ctx, ctx.test_data, f"test {dataset}")
            ctx.rd.write_per_image(rows, test_set=dataset)
            out[dataset] = {
                "metrics": headline_metrics(means, ctx.protocol.metrics),
                "metrics_by_definition": means,
                "report_metrics": list(ctx.protocol.metrics_for(info.family, tuple(info.metrics))),
                "num_test_images": len(rows),
                "eval_prompt": ctx.prompt,
            }
            log.info("%s: also tested on %s (%d images)", ctx.rd.name, dataset, len(rows))
    finally:
        ctx.test_data, ctx.prompt, ctx.use_box, ctx.n_pos, ctx.n_neg = own
    return {"also_tested": out}


def _metrics_record(
    ctx: RunContext,
    result: TrainResult,
    selector: EpochSelector,
    rows: list[dict[str, Any]],
    means: dict[str, dict[str, float]],
    extra: dict[str, Any],
    t1: float,
) -> dict[str, Any]:
    """The run's ``metrics.json`` record (``t1``: when training ended and the final evaluation began)."""
    run, rd, parts, protocol, device = ctx.run, ctx.rd, ctx.parts, ctx.protocol, ctx.device
    trained = bool(result.log_rows)
    return {
        **rd.identity(),
        "protocol": run.protocol,
        "metric_definition": protocol.metrics,
        "metrics": headline_metrics(means, protocol.metrics),
        "metrics_by_definition": means,
        **extra,
        "selection": selector.record(selection_text(selector.rule, run.eval.select_epochs))
        if trained
        else {"rule": "none", "text": "nothing trained: the pretrained model is evaluated"},
        "report_metrics": list(ctx.report_metrics),
        **(_task_record(parts.task) if parts.task is not None else {}),
        "num_test_images": len(rows),
        "num_train_images": len(ctx.train_set),
        "trainable_params": trainable_parameters(parts.student)
        + (trainable_parameters(parts.distiller) if parts.distiller is not None else 0),
        "train_seconds": round(t1 - ctx.t0, 2),
        "eval_seconds": round(time.time() - t1, 2),
        "skipped_empty_train_samples": result.skipped_empty,
        "train_loop_seconds": round(result.seconds, 2),
        "train_data_wait_fraction": round(result.data_fraction, 4),
        "eval_prompt": ctx.prompt,
        "world_size": distributed.world().world_size,
        "train_steps_per_second": round(result.steps / result.seconds, 4) if result.seconds > 0 else None,
        "peak_memory_mb": round(peak_memory_mb(device)[0], 1),
        "peak_memory_kind": peak_memory_mb(device)[1],
        "provenance": provenance_record(parts),
        "inputs": rd.inputs(),
        "status": "complete",
    }


def _task_record(task: Task) -> dict[str, Any]:
    """What a non-binary run's record says of its task: ``task``, ``classes`` and the head (``task_head``)."""
    described = task.describe()
    return {
        "task": described.pop("task"),
        "classes": described.pop("classes"),
        "ignore_index": task.info.ignore_index,
        "task_head": described,
    }


def headline_metrics(means: dict[str, dict[str, float]], definition: str) -> dict[str, float]:
    """The values a table reports: the definition's own metrics, and the clean ones for every metric the
    definition does not define (the public InfoSAM code computes no MAE, BER, mean E-measure or BF1)."""
    return {**means[BASE_DEFINITION], **means.get(definition, {})}
