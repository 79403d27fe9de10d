"""The dataset contract shared by every family.

A dataset yields samples at original resolution; resizing belongs to the backbone::

    {"image": np.ndarray (H, W, 3) uint8 RGB,
     "mask":  np.ndarray (H, W) uint8 in {0, 1},
     "name":  str  (unique within the dataset, stable across machines),
     "split": str  ("train" | "val" | "test")}

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


class Sample(TypedDict):
    image: np.ndarray
    mask: np.ndarray
    name: str
    split: str


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
    """

    family: str
    metrics: tuple[str, ...]
    eval_prompt: str = "box"
    eval_points: int = 5
    epochs: int = 10


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


def check_sample(sample: Sample, where: str) -> Sample:
    """Validate one sample against the contract; raise :class:`DatasetError` naming ``where``."""
    image, mask = sample["image"], sample["mask"]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DatasetError(f"{where}: image must be HxWx3 uint8, got {image.dtype} {image.shape}")
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise DatasetError(f"{where}: mask must be HxW uint8, got {mask.dtype} {mask.shape}")
    if mask.shape != image.shape[:2]:
        raise DatasetError(f"{where}: mask size {mask.shape} differs from image size {image.shape[:2]}")
    if mask.max(initial=0) > 1:
        raise DatasetError(f"{where}: mask values must be 0/1")
    return sample
