"""Turns contract samples into model-ready batches: backbone preprocessing plus prompts.

Everything random is drawn from generators seeded by (run seed, epoch, sample index), so data
workers, resumed runs and uninterrupted runs see exactly the same prompts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.backbones import Backbone, Prompts
from bench.contracts.dataset import SegmentationDataset
from bench.data.prompts import (
    EmptyMaskError,
    jitter_box,
    mask_box,
    sample_points,
    stable_seed,
    to_input_frame,
    translate_box,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptDraw:
    """How one object's training or evaluation prompts are drawn from its mask (every task's items share it).

    Attributes:
        img_size: The model input size S (``box_jitter`` is configured at a 1024-px input and scaled to S).
        box_jitter: Box noise in pixels of a 1024-px input.
        num_pos, num_neg: Foreground and background points.
        jitter_form: ``"corners"`` (independent noise per coordinate) or ``"translate"`` (the public InfoSAM
            code's whole-box shift, in its 1024-px frame).
    """

    img_size: int
    box_jitter: float = 0.0
    num_pos: int = 1
    num_neg: int = 0
    jitter_form: str = "corners"

    def __call__(self, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Box (4,), points (P, 2) and labels (P,) in original pixels; :class:`EmptyMaskError` on an empty mask."""
        size = mask.shape
        jitter = self.box_jitter * self.img_size / 1024
        box = mask_box(mask)
        if self.jitter_form == "translate":  # the public InfoSAM code's noise, in its 1024-px frame
            box = translate_box(box, jitter * 1024 / self.img_size, size, rng)
        else:  # jitter is defined in input pixels; convert to original pixels
            box = jitter_box(box, jitter * max(size) / self.img_size, size, rng)
        points, labels = sample_points(mask, self.num_pos, self.num_neg, rng)
        return box, points, labels


class PromptedDataset(Dataset):
    """Preprocessed samples with both prompt kinds ready (the trainer picks one per batch).

    Each item: ``image`` (3, S, S) float32, ``target`` (S, S) float32, ``box`` (4,), ``points`` (P, 2),
    ``labels`` (P,), ``valid`` (False when the mask is empty), ``index``, ``name``, ``size`` (H, W);
    evaluation items also carry ``gt`` (H, W) uint8 at original resolution.
    """

    def __init__(
        self,
        dataset: SegmentationDataset,
        backbone: Backbone,
        seed: int,
        *,
        train: bool,
        box_jitter: float = 0.0,
        num_pos: int = 1,
        num_neg: int = 0,
        jitter_form: str = "corners",
        hflip: bool = False,
    ) -> None:
        self.dataset = dataset
        self.backbone = backbone
        self.seed = seed
        self.train = train
        self.draw = PromptDraw(backbone.img_size, box_jitter, num_pos, num_neg, jitter_form)
        self.num_pos, self.num_neg = num_pos, num_neg
        self.hflip = hflip and train  # random horizontal flip of training samples (train.hflip)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        image, mask = sample["image"], sample["mask"]
        if self.hflip and np.random.default_rng(stable_seed(self.seed, self.epoch, index, "hflip")).random() < 0.5:
            image, mask = np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])
        size = mask.shape
        resized = self.backbone.resized_shape(*size)
        if self.train:
            rng = np.random.default_rng(stable_seed(self.seed, self.epoch, index))
        else:  # identical evaluation prompts for every method and seed
            rng = np.random.default_rng(stable_seed("eval", sample["name"]))
        n_points = self.num_pos + self.num_neg
        try:
            box, points, labels = self.draw(mask, rng)
            valid = True
        except EmptyMaskError:
            box = np.array([0, 0, size[1] - 1, size[0] - 1], dtype=np.float32)
            points = np.zeros((n_points, 2), dtype=np.float32)
            labels = np.zeros(n_points, dtype=np.int64)
            valid = False
        item = {
            "image": torch.from_numpy(self.backbone.preprocess_image(image)),
            "target": torch.from_numpy(self.backbone.preprocess_mask(mask)),
            "box": torch.from_numpy(to_input_frame(box, size, resized)),
            "points": torch.from_numpy(to_input_frame(points, size, resized)),
            "labels": torch.from_numpy(labels),
            "valid": valid,
            "index": index,
            "name": sample["name"],
            "size": torch.tensor(size),
        }
        if not self.train:
            item["gt"] = mask
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep names, original masks and sizes as lists."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif key == "valid":
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


def take(batch: dict[str, Any], indices: list[int]) -> dict[str, Any]:
    """The samples ``indices`` of a collated batch (tensors indexed along dim 0, lists picked)."""
    return {k: (v[indices] if isinstance(v, torch.Tensor) else [v[i] for i in indices]) for k, v in batch.items()}


def batch_prompts(batch: dict[str, Any], use_box: Optional[bool]) -> Prompts:
    """The batch's box prompts (``True``), point prompts (``False``) or none (``None``: promptless)."""
    if use_box is None:
        return Prompts()
    if use_box:
        return Prompts(boxes=batch["box"])
    return Prompts(points=batch["points"], labels=batch["labels"])


def use_box_for_batch(seed: int, epoch: int, step: int, box_prob: float) -> bool:
    """Box or points for one training batch, decided reproducibly."""
    return bool(np.random.default_rng(stable_seed(seed, epoch, step, "prompt")).random() < box_prob)


def eval_points_split(k: int) -> tuple[int, int]:
    """``k`` evaluation points → (foreground, background): 5 → 2 + 3 as in the public road protocol."""
    return k // 2 if k > 1 else 1, k - (k // 2 if k > 1 else 1)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch with drop_last."""
    return n // batch_size


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """Shuffled sample order for one epoch."""
    return np.random.default_rng(stable_seed(seed, epoch, "order")).permutation(n).tolist()
