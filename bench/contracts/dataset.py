"""The dataset contract shared by every family.

A dataset yields samples at original resolution; resizing belongs to the backbone. What a sample carries
besides the image depends on its dataset's *task* (:attr:`DatasetInfo.task`)::

    {"image": np.ndarray (H, W, 3) uint8 RGB,
     "name":  str  (unique within the dataset, stable across machines),
     "split": str  ("train" | "val" | "test"),
     # task "binary" (every dataset of the InfoSAM and Conv-LoRA binary tables):
     "mask":  np.ndarray (H, W) uint8 in {0, 1},
     # task "semantic" (one label map; Trans10K-v2, label-map folders, synth_shapes):
     "labels": np.ndarray (H, W) uint8 class indices 0..K-1, DatasetInfo.ignore_index where unlabelled,
     # task "instances" (COCO-style: any number of objects, each its own prompt and mask):
     "instances": [{"mask": np.ndarray (H, W) uint8 in {0, 1}, "category": int (index into classes)}, ...]}

A family (one module under ``datasets/``) registers one builder per variant with
``@register_dataset("name", DatasetInfo(...))`` (= ``@DATASETS.register("name", info=...)``); the builder
takes ``(split, DataConfig)`` and returns a :class:`SegmentationDataset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, TypedDict

import numpy as np
from torch.utils.data import Dataset

from bench.config import DataConfig
from bench.registry import Registry

SPLITS = ("train", "val", "test")


TASKS = ("binary", "semantic", "instances")


class Instance(TypedDict):
    mask: np.ndarray
    category: int


class Sample(TypedDict, total=False):
    image: np.ndarray
    name: str
    split: str
    mask: np.ndarray  # task "binary"
    labels: np.ndarray  # task "semantic"
    instances: list[Instance]  # task "instances"


class DatasetError(ValueError):
    """A broken dataset; the message names the offending file."""


@dataclass(frozen=True)
class DatasetInfo:
    """Protocol facts of a dataset family (README, "Datasets": the metrics each domain reports).

    Attributes:
        family: Domain family, e.g. ``"polyp"``, ``"camouflage"``, ``"leaf"``, ``"road"``.
        metrics: Metric keys reported in tables, in order (keys of :mod:`bench.eval.metrics`).
        eval_prompt: ``"box"`` or ``"points"``.
        eval_points: Number of points when ``eval_prompt == "points"``.
        epochs: The paper's epoch count for this dataset (a sweep may use it).
        task: ``"binary"`` (one 0/1 mask), ``"semantic"`` (a label map) or ``"instances"`` (a list of
            objects); see the module docstring.
        classes: Class names, index = class id (``semantic``: background included as class 0 when the
            dataset has one; ``instances``: the categories). Empty for ``binary``.
        ignore_index: Label-map value of unlabelled pixels (``semantic``): no loss, no metric.
        own_val: The dataset makes its own validation split, apart from its training images (the synthetic
            domains, ``data.synth.val_size``): ``data.hold_out_val`` does not apply, and a protocol's value
            of it is not set on its runs (their names stay as they were).
    """

    family: str
    metrics: tuple[str, ...]
    eval_prompt: str = "box"
    eval_points: int = 5
    epochs: int = 10
    task: str = "binary"
    classes: tuple[str, ...] = ()
    ignore_index: int = 255
    own_val: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"DatasetInfo.task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task != "binary" and len(self.classes) < 2 - (self.task == "instances"):
            raise ValueError(f"a {self.task} dataset names its classes (DatasetInfo.classes), got {self.classes!r}")

    def test_set_problem(self, other: "DatasetInfo") -> Optional[str]:
        """Why a model trained on this dataset cannot be scored on a test set of ``other`` (another task, other
        classes), or None (``eval.also_test``)."""
        if other.task != self.task:
            return f"it is a {other.task} dataset, the run's is {self.task}"
        if other.classes != self.classes:
            return f"its classes {list(other.classes)} differ from the run's {list(self.classes)}"
        return None

    @property
    def num_classes(self) -> int:
        """K: the number of classes a ``semantic`` or ``instances`` dataset names (1 for ``binary``)."""
        return len(self.classes) or 1


class SegmentationDataset(Dataset):
    """Base class: subclasses set ``info`` and implement ``__len__`` and ``__getitem__``."""

    info: DatasetInfo
    split: str

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        raise NotImplementedError


DatasetBuilder = Callable[[str, DataConfig], SegmentationDataset]
DATASETS: Registry[DatasetBuilder] = Registry("dataset", "datasets")


def register_dataset(name: str, info: DatasetInfo) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Register a builder under ``name`` together with its protocol facts (readable without building)."""

    return DATASETS.register(name, info=info)


def dataset_info(name: str) -> DatasetInfo:
    """The protocol facts of a registered dataset (metrics, evaluation prompt, epochs)."""
    return DATASETS.meta(name)["info"]


@dataclass(frozen=True)
class DatasetTools:
    """The checks of the real datasets' files, which only the dataset package can write (it knows the layouts):
    ``prepare``, the presence lines of ``list``, the launcher's look for each folder and ``download``'s check
    of what it unpacked. The dataset package registers one with :func:`register_dataset_tools`.

    Attributes:
        dataset_status: ``data_root`` → per registered dataset, "generated", "present (...)" or "missing (...)".
        prepare_command: The ``prepare dataset=NAME [src=PATH]`` command (its arguments → its report text).
        real_spec: A real dataset's name → its spec (``source`` text, ``folders``); ConfigError otherwise.
        check_copy: ``(name, src, data_root)`` → a report with ``ok`` and ``text()``.
    """

    dataset_status: Callable[[str | Path], dict[str, str]]
    prepare_command: Callable[[list[str]], str]
    real_spec: Callable[[str], Any]
    check_copy: Callable[[str, str | Path, Optional[str | Path]], Any]


DATASET_TOOLS: Registry[DatasetTools] = Registry("dataset tools", "datasets")


def register_dataset_tools(tools: DatasetTools, name: str = "files") -> DatasetTools:
    """Register the dataset package's file checks (one entry; a second package would register another name)."""
    DATASET_TOOLS.add(name, tools)
    return tools


def dataset_tools(name: str = "files") -> DatasetTools:
    """The registered file checks (the dataset package is imported on the first lookup)."""
    return DATASET_TOOLS.get(name)


def check_sample(sample: Sample, where: str, info: Optional[DatasetInfo] = None) -> Sample:
    """Validate one sample against the contract of its task (``info.task``; binary without ``info``); raise
    :class:`DatasetError` naming ``where``."""
    image = sample["image"]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DatasetError(f"{where}: image must be HxWx3 uint8, got {image.dtype} {image.shape}")
    task = info.task if info is not None else "binary"
    if task == "semantic":
        assert info is not None
        _check_label_map(sample.get("labels"), image.shape[:2], info, where)
        return sample
    if task == "instances":
        assert info is not None
        for k, inst in enumerate(sample.get("instances", [])):
            _check_binary(inst["mask"], image.shape[:2], f"{where} (object {k})")
            if not 0 <= int(inst["category"]) < info.num_classes:
                raise DatasetError(
                    f"{where} (object {k}): category {inst['category']} outside 0..{info.num_classes - 1} "
                    f"({', '.join(info.classes)})"
                )
        return sample
    _check_binary(sample["mask"], image.shape[:2], where)
    return sample


def _check_label_map(labels: Optional[np.ndarray], size: tuple[int, ...], info: DatasetInfo, where: str) -> None:
    if labels is None:
        raise DatasetError(f"{where}: a semantic sample needs 'labels' (an HxW label map)")
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise DatasetError(f"{where}: label map must be HxW uint8, got {labels.dtype} {labels.shape}")
    if labels.shape != size:
        raise DatasetError(f"{where}: label map size {labels.shape} differs from image size {size}")
    values = np.unique(labels)
    bad = values[(values >= info.num_classes) & (values != info.ignore_index)]
    if bad.size:
        raise DatasetError(
            f"{where}: label values {bad.tolist()} are neither a class (0..{info.num_classes - 1}) "
            f"nor the ignore index {info.ignore_index}"
        )


def _check_binary(mask: np.ndarray, size: tuple[int, ...], where: str) -> None:
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise DatasetError(f"{where}: mask must be HxW uint8, got {mask.dtype} {mask.shape}")
    if mask.shape != size:
        raise DatasetError(f"{where}: mask size {mask.shape} differs from image size {size}")
    if mask.max(initial=0) > 1:
        raise DatasetError(f"{where}: mask values must be 0/1")
