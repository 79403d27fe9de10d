"""``run_benchmark.py predict run=RUN_DIR images=DIR (boxes=CSV | points=CSV | masks=DIR | coco=JSON) out=DIR``.

A semantic run needs no prompt and writes label maps; ``coco=JSON`` gives one mask per object
(:mod:`bench.use.predict_tasks`). A binary run:

Applies a finished run's fine-tuned model to new images and writes ``<out>/<stem>.png`` (0/255 mask at
the image's own size, probability > ``threshold``) and, with ``logits=true``, ``<stem>.npy`` (float32
logits at the image's size). Prompts, in each image's own pixels:

* ``boxes=CSV`` with columns ``image,x0,y0,x1,y1`` (one box per image);
* ``points=CSV`` with columns ``image,x,y`` and optional ``label`` (1 = foreground, default; 0 =
  background), several rows per image;
* ``masks=DIR``: the box around each image's mask (``<stem>.*`` in DIR), e.g. rough annotations.

``image`` is the file name or the stem. Images are processed in batches of ``batch_size`` (points:
images with the same number of points share a batch) on ``device`` (``auto``), with a progress bar.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from bench.backbones import Prompts
from bench.config import ConfigError
from bench.config.overrides import command_args
from bench.contracts.dataset import DatasetError
from bench.data.images import IMAGE_EXTS, read_image, read_mask
from bench.data.prompts import EmptyMaskError, mask_box, to_input_frame
from bench.hardware.accel import pick_device
from bench.use.predict_tasks import predict_instances, predict_label_maps
from bench.use.trained import load_trained

log = logging.getLogger(__name__)


@dataclass
class Prompt:
    """One image's prompt in its own pixels: a box (4,) or points (N, 2) with labels (N,)."""

    box: Optional[np.ndarray] = None
    points: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None

    @property
    def group(self) -> int:
        return -1 if self.box is not None else len(self.points)  # type: ignore[arg-type]


def list_images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ConfigError(f"images={folder}: not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTS:
            if path.stem in found:
                raise ConfigError(f"images={folder}: {path.name} and {found[path.stem].name} have the same stem")
            found[path.stem] = path
    if not found:
        raise ConfigError(f"images={folder}: no image files ({' '.join(IMAGE_EXTS)})")
    return found


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise ConfigError(f"{path}: prompt CSV not found")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        if not set(columns) <= set(header):
            raise ConfigError(f"{path}: needs the columns {','.join(columns)} (found {','.join(header) or 'none'})")
        return [(i, {(k or "").strip(): (v or "").strip() for k, v in row.items()}) for i, row in enumerate(reader, 2)]


def _stem(name: str, images: dict[str, Path], where: str) -> str:
    stem = Path(name).stem if name not in images else name
    if stem not in images:
        raise ConfigError(f"{where}: image {name!r} is not in the images folder")
    return stem


def _number(row: dict[str, str], key: str, where: str) -> float:
    try:
        return float(row[key])
    except ValueError:
        raise ConfigError(f"{where}: {key}={row[key]!r} is not a number") from None


def read_boxes(path: Path, images: dict[str, Path]) -> dict[str, Prompt]:
    out: dict[str, Prompt] = {}
    for line, row in _read_csv(path, ("image", "x0", "y0", "x1", "y1")):
        where = f"{path} line {line}"
        stem = _stem(row["image"], images, where)
        if stem in out:
            raise ConfigError(f"{where}: a second box for {row['image']!r} (one box per image)")
        box = np.array([_number(row, k, where) for k in ("x0", "y0", "x1", "y1")], dtype=np.float32)
        if box[2] < box[0] or box[3] < box[1]:
            raise ConfigError(f"{where}: box needs x0 <= x1 and y0 <= y1")
        out[stem] = Prompt(box=box)
    return out


def read_points(path: Path, images: dict[str, Path]) -> dict[str, Prompt]:
    pts: dict[str, list[tuple[float, float, int]]] = {}
    for line, row in _read_csv(path, ("image", "x", "y")):
        where = f"{path} line {line}"
        stem = _stem(row["image"], images, where)
        label = int(_number(row, "label", where)) if row.get("label") else 1
        if label not in (0, 1):
            raise ConfigError(f"{where}: label must be 1 (foreground) or 0 (background)")
        pts.setdefault(stem, []).append((_number(row, "x", where), _number(row, "y", where), label))
    return {
        stem: Prompt(
            points=np.array([p[:2] for p in rows], dtype=np.float32), labels=np.array([p[2] for p in rows], np.int64)
        )
        for stem, rows in pts.items()
    }


def boxes_from_masks(folder: Path, images: dict[str, Path]) -> dict[str, Prompt]:
    if not folder.is_dir():
        raise ConfigError(f"masks={folder}: not a folder")
    out: dict[str, Prompt] = {}
    for path in sorted(folder.iterdir()):
        if path.stem in images and path.suffix.lower() in IMAGE_EXTS:
            try:
                out[path.stem] = Prompt(box=mask_box(read_mask(path)))
            except (DatasetError, EmptyMaskError) as err:
                raise ConfigError(f"{path}: {err}") from None
    return out


@dataclass
class PredictOptions:
    run: str
    images: str
    out: str
    boxes: Optional[str] = None
    points: Optional[str] = None
    masks: Optional[str] = None
    coco: Optional[str] = None  # a COCO JSON: one mask per object (bench/use/predict_tasks.py)
    logits: bool = False
    batch_size: int = 4
    device: str = "auto"
    threshold: float = 0.5
    checkpoints_dir: Optional[str] = None


def _batches(stems: list[str], prompts: dict[str, Prompt], size: int) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for stem in stems:
        groups.setdefault(prompts[stem].group, []).append(stem)
    return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]


@torch.no_grad()
def predict(opts: PredictOptions) -> list[Path]:
    """Write the masks (and logits) of every prompted image; returns the mask files. A semantic run writes label
    maps without prompts, ``coco=JSON`` one mask per object (:mod:`bench.use.predict_tasks`)."""
    given = [k for k in ("boxes", "points", "masks", "coco") if getattr(opts, k)]
    images = list_images(Path(opts.images))
    trained = load_trained(opts.run, opts.checkpoints_dir)
    device = pick_device(opts.device)
    if trained.task is not None and trained.task.name == "semantic" and not given:
        trained.model.to(device)
        return predict_label_maps(trained, images, Path(opts.out), device, max(1, opts.batch_size), opts.logits)
    if given == ["coco"]:
        trained.model.to(device)
        return predict_instances(trained, images, Path(opts.coco), Path(opts.out), device, opts.threshold)
    if len(given) != 1 or trained.task is not None and trained.task.name == "semantic":
        raise ConfigError(
            "predict needs exactly one of boxes=CSV, points=CSV, masks=DIR, coco=JSON (a semantic run: none)"
        )
    reader = {"boxes": read_boxes, "points": read_points, "masks": boxes_from_masks}[given[0]]
    prompts = reader(Path(getattr(opts, given[0])), images)
    missing = sorted(set(images) - set(prompts))
    if missing:
        raise ConfigError(f"{len(missing)} image(s) have no prompt in {getattr(opts, given[0])}, e.g. {missing[0]!r}")
    model = trained.model.to(device)
    blocks = tuple(trained.peft.feature_blocks(model))
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    stems = sorted(prompts)
    with tqdm(total=len(stems), desc="predict", unit="img", dynamic_ncols=True) as bar:
        for batch in _batches(stems, prompts, max(1, opts.batch_size)):
            arrays = [read_image(images[s]) for s in batch]
            x = torch.from_numpy(np.stack([model.preprocess_image(a) for a in arrays])).to(device)
            frames = [(a.shape[:2], model.resized_shape(*a.shape[:2])) for a in arrays]
            if prompts[batch[0]].box is not None:
                boxes = [to_input_frame(prompts[s].box, *f) for s, f in zip(batch, frames)]  # type: ignore[arg-type]
                p = Prompts(boxes=torch.from_numpy(np.stack(boxes)))
            else:
                pts = [to_input_frame(prompts[s].points, *f) for s, f in zip(batch, frames)]  # type: ignore[arg-type]
                labels = np.stack([prompts[s].labels for s in batch])  # type: ignore[misc]
                p = Prompts(points=torch.from_numpy(np.stack(pts)), labels=torch.from_numpy(labels))
            z, feats = model.encode(x, blocks=blocks)
            low = model.decode(z, p.to(device), feats).logits.float()
            for i, (stem, array) in enumerate(zip(batch, arrays)):
                full = model.postprocess(low[i : i + 1], tuple(array.shape[:2]))[0, 0].cpu().numpy()
                mask = (1.0 / (1.0 + np.exp(-full)) > opts.threshold).astype(np.uint8) * 255
                Image.fromarray(mask).save(out / f"{stem}.png")
                if opts.logits:
                    np.save(out / f"{stem}.npy", full.astype(np.float32))
                written.append(out / f"{stem}.png")
            bar.update(len(batch))
    return written


def predict_command(args: list[str]) -> str:
    pairs = command_args(args)
    known = set(PredictOptions.__dataclass_fields__)
    unknown = sorted(set(pairs) - known)
    if unknown:
        raise ConfigError(f"predict: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    for key in ("run", "images", "out"):
        if not pairs.get(key):
            raise ConfigError(
                "predict needs run=RUN_DIR images=DIR out=DIR and one of boxes=CSV, points=CSV, masks=DIR, "
                "coco=JSON (none for a semantic run)"
            )
    try:
        opts = PredictOptions(
            **{k: v for k, v in pairs.items() if k not in ("logits", "batch_size", "threshold")},
            logits=pairs.get("logits", "false").lower() in ("1", "true", "yes"),
            batch_size=int(pairs.get("batch_size", 4)),
            threshold=float(pairs.get("threshold", 0.5)),
        )
    except ValueError as err:
        raise ConfigError(f"predict: bad value ({err})") from None
    written = predict(opts)
    return f"wrote {len(written)} mask(s) to {opts.out}" + (" (+ .npy logits)" if opts.logits else "")
