"""Pairing the images and masks of a located layout into the splits of a dataset (nothing decoded).

* **Pairing.** In a folder source, a file is a sample image if its extension is one of
  :data:`bench.data.images.IMAGE_EXTS`; hidden files, sub-folders and other extensions (``.csv``, ``.json``, ``.txt``
  ...) are never samples. Files matching the source's ``ignore`` patterns (e.g. ISIC's
  ``*_superpixels.png``) or not matching its ``keep`` pattern (COD10K keeps ``*-CAM-*``, i.e. drops
  the non-camouflaged images) are dropped from both folders. The mask of image ``<stem>.<ext>`` is
  ``<stem><mask_suffix>.<any image ext>`` in the mask folder. An image without a mask, a mask
  without an image (unless the mask folder is shared between splits, as CAMO's ``GT/``), two images
  or two masks with one stem, and two samples with one name are errors naming the files.
"""

from __future__ import annotations

import csv
import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path

from bench.contracts.dataset import DatasetError
from bench.data.images import IMAGE_EXTS
from datasets._layouts import Csv, Folder, Layout, RealSpec, Source, _first_dir, _first_file, locate
from datasets._splits import draw_validation, split_order

_MAX_LISTED = 10


@dataclass(frozen=True)
class Pair:
    """An image and its mask, under the sample name."""

    name: str
    image: Path
    mask: Path


@dataclass
class Scan:
    """The pairs of every split of one located layout, and the pairing problems found."""

    spec: RealSpec
    layout: Layout
    root: Path
    splits: dict[str, list[Pair]]
    problems: list[str]
    warnings: list[str]
    val_drawn: bool
    hold_out_val: bool = True  # data.hold_out_val: False = no validation drawn from the training pool


def _is_candidate(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTS


def _by_stem(folder: Path, source: Folder, problems: list[str], suffix: str = "") -> dict[str, Path]:
    """Sample files of ``folder`` by stem (with ``suffix`` removed); duplicates are problems."""
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not _is_candidate(path) or any(fnmatch.fnmatch(path.name, pat) for pat in source.ignore):
            continue
        stem = path.stem
        if suffix:
            if not stem.endswith(suffix):
                problems.append(f"{path}: mask name does not end with {suffix!r}")
                continue
            stem = stem[: -len(suffix)]
        if not fnmatch.fnmatchcase(stem, source.keep):
            continue
        if stem in out:
            problems.append(f"{path}: same stem as {out[stem].name}")
            continue
        out[stem] = path
    return out


def _folder_pairs(base: Path, source: Folder, problems: list[str]) -> list[Pair]:
    image_dir, mask_dir = _first_dir(base, source.images), _first_dir(base, source.masks)
    assert image_dir is not None and mask_dir is not None
    images = _by_stem(image_dir, source, problems)
    masks = _by_stem(mask_dir, source, problems, source.mask_suffix)
    for stem, path in images.items():
        if stem not in masks:
            problems.append(f"{path}: image without mask (expected {stem}{source.mask_suffix}.* in {mask_dir})")
    if not source.shared_masks:
        for stem, path in masks.items():
            if stem not in images:
                problems.append(f"{path}: mask without image in {image_dir}")
    pairs = [Pair(stem, images[stem], masks[stem]) for stem in sorted(images) if stem in masks]
    if source.part != "all":
        order = split_order([p.name for p in pairs])
        held = set(order[: math.ceil(source.holdout * len(order))])
        pairs = [p for p in pairs if (p.name in held) == (source.part == "held")]
    return pairs


def _csv_pairs(base: Path, source: Csv, problems: list[str]) -> list[Pair]:
    path = _first_file(base, source.files)
    assert path is not None
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = [{(k or "").strip(): v for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        problems.append(f"{path}: unreadable CSV ({err})")
        return []
    if not {"image", "label"} <= set(header):
        problems.append(f"{path}: CSV needs the columns image,label (found {','.join(header) or 'none'})")
        return []
    pairs = []
    for line, row in enumerate(rows, start=2):
        image_rel, label_rel = (row.get("image") or "").strip(), (row.get("label") or "").strip()
        if not image_rel or not label_rel:
            problems.append(f"{path}: line {line}: empty image or label path")
            continue
        image, mask = path.parent / image_rel, path.parent / label_rel
        if not image.is_file():
            problems.append(f"{image}: listed in {path.name} line {line} but missing")
        elif not mask.is_file():
            problems.append(f"{image}: image without mask ({mask} listed in {path.name} line {line} is missing)")
        else:
            pairs.append(Pair(Path(image_rel).stem, image, mask))
    return pairs


def _pairs(base: Path, sources: tuple[Source, ...], problems: list[str]) -> list[Pair]:
    out: list[Pair] = []
    for source in sources:
        if isinstance(source, Csv):
            out.extend(_csv_pairs(base, source, problems))
        else:
            out.extend(_folder_pairs(base, source, problems))
    seen: dict[str, Pair] = {}
    unique = []
    for pair in out:
        if pair.name in seen:
            problems.append(f"{pair.image}: sample name {pair.name!r} also used by {seen[pair.name].image}")
            continue
        seen[pair.name] = pair
        unique.append(pair)
    return unique


def scan(spec: RealSpec, folder: str | Path, hold_out_val: bool = True) -> Scan:
    """Locate the layout in ``folder`` and pair the files of every split (no image is decoded).

    ``hold_out_val`` (``data.hold_out_val``): draw the validation split from the training pool when the layout
    ships none; when False the train split is the whole pool and ``val`` is empty (a layout's own validation
    files are kept either way).
    """
    layout, base = locate(spec, folder)
    problems: list[str] = []
    pool = _pairs(base, layout.train, problems)
    test = _pairs(base, layout.test, problems)
    drawn = not layout.val and hold_out_val
    if layout.val:
        val, train = _pairs(base, layout.val, problems), pool
    elif not hold_out_val:
        val, train = [], pool
    else:
        held = draw_validation([p.name for p in pool], spec.val_fraction)
        val, train = [p for p in pool if p.name in held], [p for p in pool if p.name not in held]
    splits = {"train": train, "val": val, "test": test}
    for split, pairs in splits.items():
        if not pairs and (split != "val" or layout.val or (drawn and spec.val_fraction > 0)):
            problems.append(f"{base}: empty {split} split in layout {layout.name!r}")
    names = {split: {p.name for p in pairs} for split, pairs in splits.items()}
    for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
        both = sorted(names[a] & names[b])
        if both:
            problems.append(f"{base}: {len(both)} sample(s) in both {a} and {b}, e.g. {both[0]!r}")
    warnings = []
    pooled = "val" not in spec.published  # the paper gives train + val as one number
    for split, count in spec.published.items():
        found = len(train) + len(val) if split == "train" and pooled else len(splits[split])
        if found != count:
            what = "training pool (train + val)" if split == "train" and pooled else f"{split} split"
            warnings.append(f"{spec.name}: {what} has {found} images; the paper reports {count}")
    return Scan(spec, layout, base, splits, problems, warnings, val_drawn=drawn, hold_out_val=hold_out_val)


def _raise_problems(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - _MAX_LISTED} more problems)" if len(problems) > _MAX_LISTED else ""
        raise DatasetError("; ".join(problems[:_MAX_LISTED]) + more)
