"""Transparent objects: Trans10K-v2 (Xie et al., "Segmenting Transparent Object in the Wild with
Transformer", 2021; the Conv-LoRA poster's multi-class table).

Registered as ``trans10k`` (task ``semantic``): 12 classes (background and 11 fine-grained transparent
categories, :data:`CLASSES`, in the order of Trans2Seg's ``segmentron/data/dataloader/transparent11.py``),
ignore index 255. Published splits, all three shipped (no split is drawn): 5000 train, 1000 validation,
4428 test. Reported metrics: pixel accuracy and mIoU. Evaluation is promptless (``eval_prompt="none"``,
as Conv-LoRA's semantic-segmentation setting).

Folder ``<data.root>/Trans10K_cls12`` (the release's name; ``trans10k`` is accepted too) holds the public
layout read by Trans2Seg:

* ``{train,validation,test}/images/<id>.jpg`` and ``{train,validation,test}/masks_12/<id>_mask.png``; the
  suite's ``val`` split is ``validation``.
* Masks are palette PNGs whose *index* is the class id (Trans2Seg opens them with ``.convert("P")``).
  Masks re-saved as RGB with the VOC palette colours (:func:`datasets._labels.voc_palette`) decode to the
  same ids (:func:`datasets._labels.palette_decoder`); any other colour is an error naming the file.

There is no direct archive URL (the release is on Google Drive, linked from the Trans2Seg README), so
``download dataset=trans10k`` only says where to get it; ``prepare dataset=trans10k`` checks the copy.
:func:`write_fixture` writes a miniature copy in this layout (tests, demos).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from bench.contracts.dataset import DatasetInfo
from datasets._labels import palette_decoder, voc_palette
from datasets._layouts import Folder, Layout, RealSpec
from datasets._real import register_real

CLASSES = (
    "background",
    "shelf",
    "jar",
    "freezer",
    "window",
    "door",
    "eyeglass",
    "cup",
    "wall",
    "bowl",
    "bottle",
    "box",
)
IGNORE_INDEX = 255
FOLDERS = ("Trans10K_cls12", "trans10k")
RELEASE_SPLITS = {"train": "train", "val": "validation", "test": "test"}  # suite split -> release folder
PUBLISHED = {"train": 5000, "val": 1000, "test": 4428}  # Trans10K-v2 paper / Trans2Seg README


def _part(release_split: str) -> Folder:
    return Folder(images=(f"{release_split}/images",), masks=(f"{release_split}/masks_12",), mask_suffix="_mask")


TRANS10K = RealSpec(
    name="trans10k",
    info=DatasetInfo(
        family="transparent",
        metrics=("acc", "miou"),
        eval_prompt="none",
        # [I] 30: the Conv-LoRA protocol's default epoch count (protocols/convlora.py, "*"); the poster does not
        # state one for Trans10K-v2
        epochs=30,
        task="semantic",
        classes=CLASSES,
        ignore_index=IGNORE_INDEX,
    ),
    folders=FOLDERS,
    layouts=(
        Layout(
            "public",
            train=(_part(RELEASE_SPLITS["train"]),),
            val=(_part(RELEASE_SPLITS["val"]),),
            test=(_part(RELEASE_SPLITS["test"]),),
        ),
    ),
    published=dict(PUBLISHED),
    source="Trans10K-v2 (Trans10K_cls12) on Google Drive, linked from https://github.com/xieenze/Trans2Seg "
    "(README, 'Data Preparation'); no direct archive URL",
    read_labels=palette_decoder(len(CLASSES), IGNORE_INDEX),
)

trans10k = register_real(TRANS10K)


# ---------------------------------------------------------------------------------------- fixture
def fixture_labels(name: str, size: tuple[int, int]) -> np.ndarray:
    """The label map :func:`write_fixture` writes for sample ``name``: background, three to five class
    rectangles (ids from the name's hash, at least two distinct classes) and a band of ignore pixels."""
    h, w = size
    seed = int.from_bytes(hashlib.sha256(f"trans10k-fixture|{name}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.uint8)
    picks = rng.choice(np.arange(1, len(CLASSES)), size=int(rng.integers(3, 6)), replace=False)
    for cls in picks:
        y0, x0 = int(rng.integers(0, h - h // 4)), int(rng.integers(0, w - w // 4))
        labels[y0 : y0 + int(rng.integers(h // 4, h // 2 + 1)), x0 : x0 + int(rng.integers(w // 4, w // 2 + 1))] = cls
    labels[:, : max(1, w // 16)] = IGNORE_INDEX  # unlabelled strip at the left edge
    return labels


def fixture_image(labels: np.ndarray) -> np.ndarray:
    """The image of a fixture sample: each pixel is its class's VOC colour, brightened (so an image can be
    matched with its own mask), (H, W, 3) uint8."""
    colours = voc_palette().astype(np.int32) // 2 + 64
    return colours[labels].astype(np.uint8)


def write_fixture(
    root: str | Path,
    counts: Optional[dict[str, int]] = None,
    size: tuple[int, int] = (48, 64),
    seed: int = 0,
    folder: str = FOLDERS[0],
) -> Path:
    """Write a miniature Trans10K-v2 in the public layout under ``root/folder`` and return that folder.

    ``counts`` gives the samples per suite split (default ``{"train": 4, "val": 2, "test": 3}``); each sample
    has a JPEG image and a ``P``-mode PNG mask with the VOC palette (:func:`fixture_labels`), ``size`` is
    (H, W) and ``seed`` goes into the sample ids (two seeds give different copies).
    """
    counts = counts or {"train": 4, "val": 2, "test": 3}
    base = Path(root) / folder
    palette = voc_palette().reshape(-1).tolist()
    for split, n in counts.items():
        release = RELEASE_SPLITS[split]
        (base / release / "images").mkdir(parents=True, exist_ok=True)
        (base / release / "masks_12").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"{seed}{i:04d}{split[:2]}"
            labels = fixture_labels(name, size)
            Image.fromarray(fixture_image(labels)).save(base / release / "images" / f"{name}.jpg", quality=95)
            mask = Image.fromarray(labels)  # L; putpalette makes it P with the same indices
            mask.putpalette(palette)
            mask.save(base / release / "masks_12" / f"{name}_mask.png")
    return base
