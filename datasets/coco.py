"""COCO-style instance segmentation: ``datasets=[coco] data.coco.root=DIR`` (options under ``data.coco.*``).

``DIR`` holds the images (``data.coco.images``, default ``images/``; each COCO image's ``file_name`` is relative
to it) and one COCO instance JSON per split (``data.coco.train`` / ``val`` / ``test``, relative to ``DIR``;
``val`` unset → an empty validation split, checkpoint selection falls back). Each image is one sample of task
``instances``: its name is the file stem (unique within a split), its objects are its annotations.

* **Segmentations**: polygons (a list of ``[x0, y0, x1, y1, ...]`` rings, merged), uncompressed RLE
  (``counts`` a list) and compressed RLE (``counts`` a string), decoded with :mod:`pycocotools.mask` at the
  image's own ``height`` x ``width``; a segmentation that decodes to no pixel is an error naming its id.
* **Crowd annotations** (``iscrowd=1``: one region covering many objects) are skipped, not prompted; how many
  were skipped is logged when a split is built and reported by ``prepare``.
* **Categories**: ``category`` is the index of the annotation's ``category_id`` in the sorted list of the
  train JSON's category ids; :attr:`DatasetInfo.classes` are their names in that order. The val and test JSONs
  must list the same categories (ids and names).
* **Laziness**: a JSON is parsed once (cached by path, size and modification time) and checked for references
  (unknown image or category, missing image file, duplicate names) when a split is built; masks and images
  are decoded per item. ``prepare dataset=coco data.coco.root=DIR`` decodes everything once
  (:func:`datasets._prepare.check_coco`).

The JSON is read with :mod:`json` and the masks with ``pycocotools.mask`` (``frPyObjects``, ``merge``,
``decode``, the functions behind ``COCO.annToMask``) rather than through ``pycocotools.coco.COCO``, which prints
to stdout and does not check references. :func:`write_fixture` writes a miniature copy for the tests.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from bench.config import CocoDataConfig, ConfigError, DataConfig
from bench.contracts.dataset import (
    SPLITS,
    DatasetError,
    DatasetInfo,
    Instance,
    Sample,
    SegmentationDataset,
    check_sample,
    register_dataset,
)
from bench.data.images import read_image

log = logging.getLogger(__name__)

NAME = "coco"
DEFAULT_INFO = DatasetInfo(family="coco", metrics=("iou", "dice", "miou"), task="instances", classes=("object",))


@dataclass
class CocoImage:
    """One image of a split and its non-crowd annotations (raw JSON dicts, decoded on demand)."""

    name: str
    path: Path
    height: int
    width: int
    image_id: Any
    annotations: list[dict] = field(default_factory=list)


@dataclass
class CocoSplit:
    """One split's JSON, checked for references (nothing decoded)."""

    json_path: Path
    images: list[CocoImage]
    crowd: int  # iscrowd=1 annotations skipped


_JSON_CACHE: dict[tuple[str, int, int], dict] = {}
_JSON_CACHE_SIZE = 8


def read_json(path: Path) -> dict:
    """Parse a COCO JSON once (cached by path, size, mtime); DatasetError naming the file otherwise."""
    if not path.is_file():
        raise DatasetError(f"{path}: COCO annotation file not found")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _JSON_CACHE:
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetError(f"{path}: malformed JSON ({err})") from None
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: a COCO file is a JSON object, got {type(data).__name__}")
        for key_ in ("images", "annotations", "categories"):
            if not isinstance(data.get(key_), list):
                raise DatasetError(f"{path}: no {key_!r} list (not a COCO instance file)")
        while len(_JSON_CACHE) >= _JSON_CACHE_SIZE:  # keep the latest few files
            _JSON_CACHE.pop(next(iter(_JSON_CACHE)))
        _JSON_CACHE[key] = data
    return _JSON_CACHE[key]


def categories(data: dict, path: Path) -> dict[Any, str]:
    """``category id → name`` in sorted id order."""
    cats: dict[Any, str] = {}
    for cat in data["categories"]:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or "name" not in cat:
            raise DatasetError(f"{path}: category {cat!r} needs an integer 'id' and a 'name'")
        if cat["id"] in cats:
            raise DatasetError(f"{path}: category id {cat['id']} listed twice")
        cats[cat["id"]] = str(cat["name"])
    if not cats:
        raise DatasetError(f"{path}: no categories")
    return {k: cats[k] for k in sorted(cats)}


def _json_path(cfg: CocoDataConfig, split: str) -> Optional[Path]:
    if not cfg.root:
        raise ConfigError("the coco dataset needs data.coco.root=DIR (images + COCO instance JSONs)")
    rel = {"train": cfg.train, "val": cfg.val, "test": cfg.test}[split]
    return Path(cfg.root) / rel if rel else None


def coco_classes(cfg: CocoDataConfig) -> dict[Any, str]:
    """The train JSON's categories (id → name, sorted ids): the classes of every split."""
    path = _json_path(cfg, "train")
    assert path is not None
    return categories(read_json(path), path)


def coco_info(cfg: CocoDataConfig) -> DatasetInfo:
    return DatasetInfo(
        family="coco",
        metrics=("iou", "dice", "miou"),  # miou: the mean over categories of their objects' IoU
        eval_prompt=cfg.eval_prompt,
        epochs=cfg.epochs,
        task="instances",
        classes=tuple(coco_classes(cfg).values()),
    )


def scan_split(cfg: CocoDataConfig, split: str) -> CocoSplit:
    """Read one split's JSON and check its references; DatasetError naming the file at the first problem."""
    if split not in SPLITS:
        raise DatasetError(f"{NAME}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    path = _json_path(cfg, split)
    if path is None:
        return CocoSplit(Path(), [], 0)
    classes = coco_classes(cfg)
    data = read_json(path)
    if split != "train":
        mine = categories(data, path)
        if mine != classes:
            raise DatasetError(
                f"{path}: categories {mine} differ from those of the train file {_json_path(cfg, 'train')} ({classes})"
            )
    image_dir = Path(cfg.root or ".") / cfg.images
    images: dict[Any, CocoImage] = {}
    names: dict[str, str] = {}
    for img in data["images"]:
        try:
            image_id, file_name = img["id"], str(img["file_name"])
            height, width = int(img["height"]), int(img["width"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{path}: image entry {img!r} needs id, file_name, height and width") from None
        if image_id in images:
            raise DatasetError(f"{path}: image id {image_id} listed twice")
        name = Path(file_name).stem
        if name in names:
            raise DatasetError(f"{path}: images {names[name]!r} and {file_name!r} share the sample name {name!r}")
        names[name] = file_name
        file = image_dir / file_name
        if not file.is_file():
            raise DatasetError(f"{file}: image file not found (image id {image_id} of {path})")
        images[image_id] = CocoImage(name, file, height, width, image_id)
    crowd = 0
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or "image_id" not in ann or "segmentation" not in ann:
            raise DatasetError(f"{path}: annotation {str(ann)[:80]} needs image_id and segmentation")
        where = f"{path}: annotation id {ann.get('id')}"
        if ann["image_id"] not in images:
            raise DatasetError(f"{where} refers to unknown image id {ann['image_id']}")
        if ann.get("category_id") not in classes:
            raise DatasetError(f"{where} refers to unknown category id {ann.get('category_id')}")
        if ann.get("iscrowd", 0):
            crowd += 1
            continue
        images[ann["image_id"]].annotations.append(ann)
    if crowd:
        log.info("%s: skipped %d crowd annotation(s) (iscrowd=1)", path, crowd)
    return CocoSplit(path, list(images.values()), crowd)


def decode_segmentation(seg: Any, height: int, width: int, where: str) -> np.ndarray:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as an (H, W) uint8 0/1 mask."""
    from pycocotools import mask as mask_utils

    try:
        if isinstance(seg, list):
            rings = [ring for ring in seg]
            if not rings or any(not isinstance(r, list) or len(r) < 6 or len(r) % 2 for r in rings):
                raise DatasetError(f"{where}: polygons must be lists of >= 3 (x, y) pairs")
            rle = mask_utils.merge(mask_utils.frPyObjects([[float(v) for v in r] for r in rings], height, width))
        elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
            if [int(v) for v in seg["size"]] != [height, width]:
                raise DatasetError(f"{where}: RLE size {seg['size']} differs from the image's {[height, width]}")
            counts = seg["counts"]
            if isinstance(counts, list):
                if sum(int(c) for c in counts) != height * width:
                    raise DatasetError(f"{where}: RLE counts sum to {sum(counts)}, not H*W = {height * width}")
                rle = mask_utils.frPyObjects(seg, height, width)
            elif isinstance(counts, (str, bytes)):
                rle = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
            else:
                raise DatasetError(f"{where}: RLE counts must be a list or a string")
        else:
            raise DatasetError(f"{where}: segmentation is neither polygons nor RLE")
        mask = mask_utils.decode(rle)
    except DatasetError:
        raise
    except Exception as err:  # pycocotools raises assorted types on broken input
        raise DatasetError(f"{where}: undecodable segmentation ({err})") from None
    mask = np.ascontiguousarray(mask.reshape(height, width), dtype=np.uint8)
    if not mask.any():
        raise DatasetError(f"{where}: segmentation decodes to an empty mask")
    return mask


def load_image(img: CocoImage, json_path: Path, class_ids: list[Any], split: str, info: DatasetInfo) -> Sample:
    """Decode one image and its objects; DatasetError naming the file."""
    image = read_image(img.path)
    if image.shape[:2] != (img.height, img.width):
        raise DatasetError(
            f"{img.path}: image size {image.shape[1]}x{image.shape[0]} differs from {json_path}'s "
            f"width x height {img.width}x{img.height}"
        )
    instances: list[Instance] = []
    for ann in img.annotations:
        where = f"{json_path}: annotation id {ann.get('id')} (image {img.path.name})"
        mask = decode_segmentation(ann["segmentation"], img.height, img.width, where)
        instances.append({"mask": mask, "category": class_ids.index(ann["category_id"])})
    sample: Sample = {"image": image, "instances": instances, "name": img.name, "split": split}
    return check_sample(sample, str(img.path), info)


class CocoDataset(SegmentationDataset):
    """One split of a COCO-style dataset (see the module docstring)."""

    def __init__(self, split: str, cfg: DataConfig) -> None:
        self.split = split
        self.data = scan_split(cfg.coco, split)
        self.info = coco_info(cfg.coco)
        self.class_ids = list(coco_classes(cfg.coco))
        if not self.data.images and split != "val":
            raise DatasetError(f"{self.data.json_path}: empty {split} split of the coco dataset (no images)")

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, index: int) -> Sample:
        img = self.data.images[index]
        return load_image(img, self.data.json_path, self.class_ids, self.split, self.info)


@register_dataset(NAME, DEFAULT_INFO)
def coco(split: str, cfg: DataConfig) -> SegmentationDataset:
    return CocoDataset(split, cfg)


# --- fixture --------------------------------------------------------------------------------------------------

FIXTURE_CATEGORIES = ({"id": 7, "name": "square"}, {"id": 3, "name": "bar"})  # unsorted on purpose
ENCODINGS = ("polygon", "rle", "rle_compressed")


def _uncompressed_rle(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE (column-major runs, starting with a run of zeros), written without pycocotools."""
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return runs if flat[0] == 0 else [0] + runs


def encode_rect(box: tuple[int, int, int, int], size: tuple[int, int], encoding: str) -> Any:
    """The segmentation of the pixel rectangle ``rows y0..y1-1, cols x0..x1-1`` (``box = x0, y0, x1, y1``)."""
    x0, y0, x1, y1 = box
    if encoding == "polygon":  # corners on pixel edges: covers [x0, x1) x [y0, y1)
        return [[x0, y0, x1, y0, x1, y1, x0, y1]]
    mask = np.zeros(size, np.uint8)
    mask[y0:y1, x0:x1] = 1
    if encoding == "rle":
        return {"size": list(size), "counts": _uncompressed_rle(mask)}
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(size), "counts": rle["counts"].decode("ascii")}


def write_fixture(
    root: Path, counts: tuple[int, ...] = (1, 3, 0, 2), size: tuple[int, int] = (96, 128), seed: int = 0
) -> dict[str, dict[str, list[tuple[int, np.ndarray]]]]:
    """Write a miniature COCO copy under ``root``: ``images/*.png``, ``annotations/{train,test}.json``.

    Each split has ``len(counts)`` images of ``size`` (H, W); image ``i`` holds ``counts[i]`` rectangles drawn
    in their category's colour, their segmentations cycling through polygon, uncompressed and compressed RLE;
    two categories (ids 7 and 3, listed unsorted). The first train image with objects also gets one crowd
    annotation (skipped by the dataset). Returns ``{split: {name: [(category index, mask), ...]}}``, the
    masks drawn.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    h, w = size
    class_ids = sorted(c["id"] for c in FIXTURE_CATEGORIES)
    colours = {3: (220, 40, 40), 7: (40, 200, 60)}
    expected: dict[str, dict[str, list[tuple[int, np.ndarray]]]] = {}
    ann_id, k = 1, 0
    for split in ("train", "test"):
        images, annotations, expected[split] = [], [], {}
        crowd_done = split != "train"
        for i, n in enumerate(counts):
            name = f"{split}_{i:03d}"
            image_id = 100 * (split == "test") + i + 1
            pixels = np.full((h, w, 3), (90, 90, 110), np.uint8)
            pixels += rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
            objects = []
            for _ in range(n):
                cat = (7, 3)[k % 2]
                bh, bw = int(rng.integers(8, h // 2)), int(rng.integers(8, w // 2))
                y0, x0 = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
                box = (x0, y0, x0 + bw, y0 + bh)
                mask = np.zeros(size, np.uint8)
                mask[y0 : y0 + bh, x0 : x0 + bw] = 1
                pixels[mask.astype(bool)] = colours[cat]
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": cat,
                        "segmentation": encode_rect(box, size, ENCODINGS[k % len(ENCODINGS)]),
                        "area": int(mask.sum()),
                        "bbox": [x0, y0, bw, bh],
                        "iscrowd": 0,
                    }
                )
                objects.append((class_ids.index(cat), mask))
                ann_id, k = ann_id + 1, k + 1
            if n and not crowd_done:
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": 3,
                        "segmentation": encode_rect((0, 0, 6, 6), size, "rle"),
                        "area": 36,
                        "bbox": [0, 0, 6, 6],
                        "iscrowd": 1,
                    }
                )
                ann_id, crowd_done = ann_id + 1, True
            Image.fromarray(pixels).save(root / "images" / f"{name}.png")
            images.append({"id": image_id, "file_name": f"{name}.png", "height": h, "width": w})
            expected[split][name] = objects
        data = {"images": images, "annotations": annotations, "categories": list(FIXTURE_CATEGORIES)}
        (root / "annotations" / f"{split}.json").write_text(json.dumps(data))
    return expected
