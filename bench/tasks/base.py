"""The task interface the trainer, the evaluation and the runner call for non-binary datasets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch.utils.data import Dataset

from bench.backbones import Backbone, Prompts
from bench.config import ConfigError, RunConfig, TrainConfig
from bench.contracts.dataset import DatasetInfo, SegmentationDataset
from bench.contracts.distill import Features
from bench.registry import Registry

Evaluation = tuple[list[dict[str, Any]], dict[str, dict[str, float]]]  # (per-image rows, means by definition)


@dataclass(frozen=True)
class EvalSettings:
    """How a task scores a split (the run's ``eval.*`` and ``train.*`` speed switches, as the binary
    :func:`bench.eval.evaluate.evaluate` takes them): ``resolution`` is ``"original"`` or ``"input"``."""

    batch_size: int
    desc: str
    precision: str
    channels_last: bool
    resolution: str


class TaskError(ConfigError):
    """A task cannot run with this configuration (e.g. a decoder extension that rewrites one-mask logits)."""


class Task:
    """One non-binary task of one run. Subclasses register with :func:`register_task` under a dataset task name.

    Attributes:
        name: The dataset task it serves (``DatasetInfo.task``).
        info: The dataset's protocol facts (classes, ignore index, metrics).
        run: The run's resolved config.
        selection_metric: The metric key that decides "best" in checkpoint selection.
        definitions: The metric definitions :meth:`evaluate` scores under (the first is the base one).
    """

    name: str = ""
    selection_metric: str = ""
    definitions: tuple[str, ...] = ("clean",)

    def __init__(self, info: DatasetInfo, run: RunConfig) -> None:
        self.info = info
        self.run = run

    # ------------------------------------------------------------------ model
    def prepare_student(self, student: Backbone) -> None:
        """Shape the student's decoder before the PEFT method is applied (e.g. its number of mask tokens)."""

    def attach_head(self, student: Backbone) -> None:
        """Add the task's trainable head to the student after the PEFT method was applied."""

    def describe(self) -> dict[str, Any]:
        """What the run's record says about the task (head, loss, number of queries)."""
        return {"task": self.name, "classes": list(self.info.classes)}

    # ------------------------------------------------------------------ data
    def dataset(self, split_set: SegmentationDataset, backbone: Backbone, seed: int, *, train: bool) -> Dataset:
        raise NotImplementedError

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def loss_terms(
        self, parts: Any, batch: dict[str, Any], use_box: Optional[bool], device: torch.device, cfg: TrainConfig
    ) -> tuple[dict[str, torch.Tensor], Features, Optional[Features]]:
        """The task's named loss terms of one batch, the student's features and the teacher's (None without a
        distiller). ``parts`` is the trainer's :class:`~bench.train.trainer.TrainParts`."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        backbone: Backbone,
        encoder: Callable[[torch.Tensor], tuple[torch.Tensor, dict[int, torch.Tensor]]],
        data: Dataset,
        device: torch.device,
        settings: EvalSettings,
    ) -> Evaluation:
        raise NotImplementedError


TASKS: Registry[type[Task]] = Registry("task", "bench.tasks")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: register a :class:`Task` under its ``name``."""
    TASKS.add(cls.name, cls)
    return cls


def task_names() -> list[str]:
    return sorted(TASKS.names())


def build_task(info: DatasetInfo, run: RunConfig) -> Optional[Task]:
    """The task of a dataset, or None for a binary one (the trainer's own path)."""
    if info.task == "binary":
        return None
    return TASKS.get(info.task)(info, run)


def teacher_features(parts: Any, images: torch.Tensor, prompts: Prompts) -> Optional[Features]:
    """The frozen teacher's features (no grad) when the run has a distiller; the teacher decodes as the binary
    path does (its own decoder, ``prompts``)."""
    if parts.distiller is None:
        return None
    assert parts.teacher is not None and parts.teacher_encoder is not None
    with torch.no_grad():
        zt, tblocks = parts.teacher_encoder(images)
        tout = parts.teacher.decode(zt, prompts, tblocks)
    return Features(zt, tout.mask_token, tout.logits, tout.iou, tblocks)


def task_from_record(record: dict[str, Any], run: RunConfig) -> Optional[Task]:
    """The task of a finished run from its ``metrics.json`` record (``task``, ``classes``, ``ignore_index``), so
    ``predict`` and ``export`` rebuild its head without the dataset; None for a binary run."""
    name = record.get("task", "binary")
    if name == "binary":
        return None
    info = DatasetInfo(
        family=str(record.get("family", "recorded")),
        metrics=tuple(record.get("report_metrics") or ()),
        task=name,
        classes=tuple(record["classes"]),
        ignore_index=int(record.get("ignore_index", 255)),
    )
    return build_task(info, run)
