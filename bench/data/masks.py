"""The predicted masks a run keeps for the report's qualitative figure (``eval.keep_masks``).

The first ``N`` test images by name (the same names for every method and seed of a dataset) keep, in
``<run>/masks/``::

    masks.json          {"frame": "original" | "input", "prompt": "box" | "points", "images": [
                          {"name", "image", "gt", "pred", "box": [x0, y0, x1, y1] | null,
                           "points": [[x, y], ...] | null, "labels": [1 | 0, ...] | null}, ...]}
    <stem>_image.jpg    the test image (RGB, in the frame the metrics were computed in)
    <stem>_gt.png       its ground truth (0 / 255)
    <stem>_pred.png     the binary prediction, sigmoid(logits) > 0.5 (0 / 255), as IoU / Dice threshold it

Prompts are in the pixel coordinates of that frame (``original``: the image's own size; ``input``: the
resized image of ``eval.resolution=input``). Keeping masks never changes a score.
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from bench.fileio import atomic_write

log = logging.getLogger(__name__)

MASKS_DIR = "masks"
INDEX_FILE = "masks.json"


def file_stem(name: str) -> str:
    """A file-name-safe stem for an image name (names may hold folders)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


@dataclass
class _Kept:
    index: int
    pred: np.ndarray  # (H, W) bool
    gt: np.ndarray  # (H, W) uint8 {0, 1}
    box: Optional[list[float]]
    points: Optional[list[list[float]]]
    labels: Optional[list[int]]


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class MaskKeeper:
    """Collects the masks of the ``n`` first test images by name while :func:`bench.eval.evaluate.evaluate` runs.

    Called once per scored image (``keeper(batch, i, logits, gt)``); a later evaluation of the same image
    replaces the earlier one, so after the run's last test evaluation (its reported checkpoint) the keeper
    holds that checkpoint's masks. :meth:`write` stores them.

    Args:
        n: how many images to keep (the first ``n`` names in sorted order).
        dataset: the test split (its samples give the images, read once per kept image when writing).
        backbone: the evaluated backbone (its ``resized_shape`` maps prompts back from the model input).
        use_box: whether the evaluation prompt is the box (else points; None: promptless).
        resolution: ``eval.resolution`` (``original`` or ``input``): the frame of the logits and GT.
    """

    def __init__(
        self, n: int, dataset: Any, backbone: Any, use_box: Optional[bool], resolution: str = "original"
    ) -> None:
        self.n = n
        self.dataset = dataset
        self.backbone = backbone
        self.use_box = use_box
        self.resolution = resolution
        self.kept: dict[str, _Kept] = {}

    def __call__(self, batch: dict[str, Any], i: int, logits: np.ndarray, gt: np.ndarray) -> None:
        name = batch["name"][i]
        if name not in self.kept and len(self.kept) >= self.n and name > max(self.kept):
            return
        size = tuple(int(v) for v in batch["size"][i])
        rh, rw = self.backbone.resized_shape(*size)
        scale = np.array([gt.shape[1] / rw, gt.shape[0] / rh], dtype=np.float64)  # input frame -> logits frame
        box = points = labels = None
        if self.use_box is None:  # promptless: nothing to draw
            pass
        elif self.use_box:
            box = (batch["box"][i].numpy().reshape(2, 2) * scale).reshape(-1).round(2).tolist()
        else:
            points = (batch["points"][i].numpy().reshape(-1, 2) * scale).round(2).tolist()
            labels = [int(v) for v in batch["labels"][i]]
        self.kept[name] = _Kept(int(batch["index"][i]), logits > 0, np.asarray(gt, np.uint8), box, points, labels)
        while len(self.kept) > self.n:
            del self.kept[max(self.kept)]

    def merge(self, parts: list[dict[str, _Kept]]) -> None:
        """Join the images kept by every rank (``parts``, e.g. from
        :func:`bench.train.distributed.gather_objects`): a sharded evaluation scores each image on one rank only,
        so each rank holds the first names of its own shard; the first ``n`` names overall remain."""
        merged: dict[str, _Kept] = {}
        for part in parts:
            merged.update(part)
        self.kept = {name: merged[name] for name in sorted(merged)[: self.n]}

    def write(self, run_path: str | Path) -> Optional[Path]:
        """Write the kept images into ``<run_path>/masks/`` (index last); returns the index path."""
        if not self.kept:
            return None
        folder = Path(run_path) / MASKS_DIR
        entries = []
        for name in sorted(self.kept):
            kept = self.kept[name]
            stem = file_stem(name)
            image = np.asarray(self.dataset[kept.index]["image"])
            if image.shape[:2] != kept.gt.shape:  # eval.resolution=input: the image as the model saw it
                image = np.asarray(Image.fromarray(image).resize(kept.gt.shape[::-1], Image.BILINEAR))
            files = {"image": f"{stem}_image.jpg", "gt": f"{stem}_gt.png", "pred": f"{stem}_pred.png"}
            atomic_write(folder / files["image"], _jpeg(image))
            atomic_write(folder / files["gt"], _png((kept.gt > 0).astype(np.uint8) * 255))
            atomic_write(folder / files["pred"], _png(kept.pred.astype(np.uint8) * 255))
            entries.append({"name": name, **files, "box": kept.box, "points": kept.points, "labels": kept.labels})
        prompt = "none" if self.use_box is None else "box" if self.use_box else "points"
        index = {"frame": self.resolution, "prompt": prompt, "images": entries}
        path = folder / INDEX_FILE
        atomic_write(path, json.dumps(index, indent=2).encode())
        log.info("kept the masks of %d test images in %s", len(entries), folder)
        return path


def read_masks(run_path: str | Path) -> Optional[dict[str, Any]]:
    """``masks.json`` of a run with absolute file paths, or None (a run from before masks were kept)."""
    folder = Path(run_path) / MASKS_DIR
    path = folder / INDEX_FILE
    if not path.is_file():
        return None
    index = json.loads(path.read_text())
    for entry in index["images"]:
        for key in ("image", "gt", "pred"):
            entry[key] = folder / entry[key]
    return index
