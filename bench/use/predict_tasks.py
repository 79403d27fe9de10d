"""``predict`` for runs beyond one binary mask (the run's record names its task).

* **semantic** runs are promptless: ``predict run=RUN images=DIR out=DIR`` writes ``<out>/<stem>.png``, the label
  map (class index per pixel, ``P``-mode PNG coloured with the VOC palette; the classes are listed in
  ``<out>/classes.txt``) at the image's own size, and with ``logits=true`` ``<stem>.npy``, the (K, H, W) float32
  class scores it is the argmax of.
* **COCO-style input** (any box-prompted run, e.g. an ``instances`` run): ``coco=JSON`` reads the images' objects
  from a COCO JSON (``bbox`` as x, y, w, h; ``file_name`` relative to ``images=DIR``; crowd annotations skipped)
  and writes one 0/255 mask per object, ``<out>/<stem>_<annotation id>.png``. Each image is encoded once; its
  objects share the embedding.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from bench.backbones import Prompts
from bench.config import ConfigError
from bench.data.images import read_image
from bench.data.labels import save_label_map
from bench.data.prompts import to_input_frame
from bench.use.trained import TrainedModel

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_label_maps(
    trained: TrainedModel, images: dict[str, Path], out: Path, device: torch.device, batch_size: int, logits: bool
) -> list[Path]:
    """Label maps of a semantic run for every image (see the module docstring)."""
    model, task = trained.model, trained.task
    assert task is not None
    blocks = tuple(trained.peft.feature_blocks(model))
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(task.info.classes) + "\n")
    stems, written = sorted(images), []
    with tqdm(total=len(stems), desc="predict", unit="img", dynamic_ncols=True) as bar:
        for start in range(0, len(stems), batch_size):
            batch = stems[start : start + batch_size]
            arrays = [read_image(images[s]) for s in batch]
            x = torch.from_numpy(np.stack([model.preprocess_image(a) for a in arrays])).to(device)
            z, feats = model.encode(x, blocks=blocks)
            queries = model.decode_queries(z, feats)
            cls = model.task_head.class_logits(queries.tokens)
            for i, (stem, array) in enumerate(zip(batch, arrays)):
                up = model.postprocess(queries.masks[i : i + 1].float(), tuple(array.shape[:2]))
                scores = model.task_head.scores(up, None if cls is None else cls[i : i + 1])[0]
                save_label_map(scores.argmax(0).cpu().numpy().astype(np.uint8), out / f"{stem}.png")
                if logits:
                    np.save(out / f"{stem}.npy", scores.cpu().numpy().astype(np.float32))
                written.append(out / f"{stem}.png")
            bar.update(len(batch))
    return written


def read_coco_boxes(path: Path, images: dict[str, Path]) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Per image stem, its objects' ``(annotation id, box x0 y0 x1 y1)`` from a COCO JSON; ConfigError naming
    the file for a missing key, an unknown image or a box without area."""
    if not path.is_file():
        raise ConfigError(f"coco={path}: file not found")
    try:
        data = json.loads(path.read_text())
        files = {int(im["id"]): Path(im["file_name"]).stem for im in data["images"]}
        out: dict[str, list[tuple[int, np.ndarray]]] = {stem: [] for stem in files.values() if stem in images}
        for ann in data["annotations"]:
            if ann.get("iscrowd"):  # one region over many objects: not prompted (as the coco dataset)
                continue
            stem = files.get(int(ann["image_id"]))
            if stem is None:
                raise ConfigError(f"coco={path}: annotation {ann['id']} names unknown image id {ann['image_id']}")
            if stem not in images:
                raise ConfigError(f"coco={path}: image {stem!r} of annotation {ann['id']} is not in the images folder")
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w <= 0 or h <= 0:
                raise ConfigError(f"coco={path}: annotation {ann['id']} has an empty bbox {ann['bbox']}")
            out[stem].append((int(ann["id"]), np.array([x, y, x + w, y + h], dtype=np.float32)))
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"coco={path}: not a COCO instance JSON ({type(err).__name__}: {err})") from None
    return out


@torch.no_grad()
def predict_instances(
    trained: TrainedModel, images: dict[str, Path], coco: Path, out: Path, device: torch.device, threshold: float
) -> list[Path]:
    """One mask per COCO object, the image encoded once for all its objects (see the module docstring)."""
    model = trained.model
    if trained.task is not None and trained.task.name == "semantic":
        raise ConfigError("coco=JSON prompts objects; a semantic run is promptless (omit coco=)")
    objects = read_coco_boxes(coco, images)
    blocks = tuple(trained.peft.feature_blocks(model))
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for stem in tqdm(sorted(objects), desc="predict", unit="img", dynamic_ncols=True):
        if not objects[stem]:
            continue
        array = read_image(images[stem])
        frame: Any = (array.shape[:2], model.resized_shape(*array.shape[:2]))
        x = torch.from_numpy(model.preprocess_image(array))[None].to(device)
        z, feats = model.encode(x, blocks=blocks)
        n = len(objects[stem])
        boxes = torch.from_numpy(np.stack([to_input_frame(box, *frame) for _, box in objects[stem]])).to(device)
        low = model.decode(
            z.expand(n, -1, -1, -1), Prompts(boxes=boxes), {k: v.expand(n, *v.shape[1:]) for k, v in feats.items()}
        )
        for k, (ann_id, _) in enumerate(objects[stem]):
            full = model.postprocess(low.logits[k : k + 1].float(), tuple(array.shape[:2]))[0, 0].cpu().numpy()
            mask = (1.0 / (1.0 + np.exp(-full)) > threshold).astype(np.uint8) * 255
            path = out / f"{stem}_{ann_id}.png"
            Image.fromarray(mask).save(path)
            written.append(path)
    return written
