"""Shared machinery of the real datasets: layouts, pairing, mask binarisation, splits, verification.

A real dataset lives in one sub-folder of ``data.root`` (:attr:`RealSpec.folders` lists the accepted
names, e.g. ``polyp`` or Conv-LoRA's archive name). Inside it, the files may follow one of several
*layouts* (:class:`Layout`): the dataset's public release (or the PraNet / SINet re-packaging) and the
Conv-LoRA CSV archives (``train.csv``, ``val.csv``, ``test*.csv`` with ``image,label`` columns, paths
relative to the CSV; InfoSAM's ``datasets/dataset_csv.py`` reads the same files). The first layout whose
folders / CSV files exist is used; it may sit in the dataset folder itself or up to two levels below it
(an archive unpacked into ``polyp/polyp/`` is found).

Rules (the same for every dataset, so nothing is skipped by accident):

* **Pairing.** In a folder source, a file is a sample image if its extension is one of
  :data:`bench.images.IMAGE_EXTS`; hidden files, sub-folders and other extensions (``.csv``, ``.json``, ``.txt``
  ...) are never samples. Files matching the source's ``ignore`` patterns (e.g. ISIC's
  ``*_superpixels.png``) or not matching its ``keep`` pattern (COD10K keeps ``*-CAM-*``, i.e. drops
  the non-camouflaged images) are dropped from both folders. The mask of image ``<stem>.<ext>`` is
  ``<stem><mask_suffix>.<any image ext>`` in the mask folder. An image without a mask, a mask
  without an image (unless the mask folder is shared between splits, as CAMO's ``GT/``), two images
  or two masks with one stem, and two samples with one name are errors naming the files.
* **Masks** are binarised at half range: values in ``{0, 1}`` are taken as they are; otherwise the
  threshold is half the value range (127.5 for 8-bit, 32767.5 for 16-bit files), so JPEG masks with
  values near 0 and 255 are fine. A file with more than :data:`bench.images.MAX_MID_FRACTION` of its pixels far
  from both ends (between 10 % and 90 % of the range) is not a mask and is rejected, as is a file
  whose largest value lies between 10 % and 50 % of the range (e.g. label-index masks 0/38).
* **Validation split.** When a layout has no validation files, ``RealSpec.val_fraction`` of the
  training pool is drawn once: the pool's names are ordered by ``sha256(f"{SPLIT_SEED}|{name}")``
  and the first ``round(fraction * n)`` form the validation split. This depends only on the names
  (no RNG whose stream could change between library versions), so every machine gets the same split.
  It is written to ``<data.cache_dir>/splits/<dataset>__<layout>.json`` and logged.
* **Verification.** Before a split is used, every pair is decoded once (readable, truncated files
  caught, sizes equal, mask binary); a stamp under ``<data.cache_dir>/verified/`` keyed by file
  names, sizes and modification times skips this next time. A run therefore never starts on a broken
  dataset; the error names the file.

Images are decoded with Pillow (truncated files raise instead of being padded silently), converted to
RGB (palette, grey and RGBA images included; alpha dropped); EXIF orientation is not applied to either
file, so images and masks stay aligned as stored.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from bench.config import DataConfig
from bench.contracts.dataset import (
    SPLITS,
    DatasetError,
    DatasetInfo,
    Sample,
    SegmentationDataset,
    check_sample,
    register_dataset,
)
from bench.fileio import atomic_write
from bench.images import IMAGE_EXTS, read_image, read_mask

logger = logging.getLogger(__name__)

SPLIT_SEED = "samfit-split-v1"
_SEARCH_DEPTH = 2
_MAX_LISTED = 10


# ------------------------------------------------------------------------------------ layout spec
@dataclass(frozen=True)
class Folder:
    """An image folder and its mask folder, paired by file stem.

    Attributes:
        images: Candidate image folders relative to the layout root; the first that exists is used.
        masks: Candidate mask folders, likewise.
        mask_suffix: The mask stem is the image stem plus this (ISIC: ``"_segmentation"``).
        keep: fnmatch pattern a stem must match to be a sample (COD10K: ``"*-CAM-*"``).
        ignore: fnmatch patterns of file names that are not samples (ISIC: ``"*_superpixels.*"``).
        shared_masks: The mask folder also holds other splits' masks: extra masks are not errors.
        part: ``"all"``; or, for a release without a test split, ``"held"`` / ``"rest"``: the
            ``ceil(holdout * n)`` names first in the split order / the others.
        holdout: Fraction held out when ``part`` is ``"held"`` or ``"rest"``.
    """

    images: tuple[str, ...]
    masks: tuple[str, ...]
    mask_suffix: str = ""
    keep: str = "*"
    ignore: tuple[str, ...] = ()
    shared_masks: bool = False
    part: str = "all"
    holdout: float = 0.0


@dataclass(frozen=True)
class Csv:
    """A Conv-LoRA CSV file (``image,label`` columns, paths relative to the CSV's folder).

    Attributes:
        files: Candidate file names; the first that exists is used.
    """

    files: tuple[str, ...]


Source = Union[Folder, Csv]


@dataclass(frozen=True)
class Layout:
    """One way the files of a dataset can be arranged.

    Attributes:
        name: Short name shown in logs and by ``prepare`` (``"public"``, ``"pranet"``, ``"convlora_csv"``).
        train: Sources of the training pool (validation drawn from it when ``val`` is empty).
        test: Sources of the test split.
        val: Sources of a published validation split, if any.
    """

    name: str
    train: tuple[Source, ...]
    test: tuple[Source, ...]
    val: tuple[Source, ...] = ()


@dataclass(frozen=True)
class RealSpec:
    """Everything about one registered real dataset.

    Attributes:
        name: Registered name.
        info: Protocol facts (metrics, prompts, epochs).
        folders: Accepted sub-folder names under ``data.root``, the documented one first.
        layouts: Supported layouts, tried in order.
        published: Published split sizes ``{split: count}`` (checked by ``prepare``; a mismatch is
            a warning, since re-packagings differ by a few images).
        val_fraction: Share of the training pool drawn as validation when the layout has none.
        source: Where the dataset is published (README / ``prepare`` output).
    """

    name: str
    info: DatasetInfo
    folders: tuple[str, ...]
    layouts: tuple[Layout, ...]
    published: dict[str, int] = field(default_factory=dict)
    val_fraction: float = 0.0
    source: str = ""


@dataclass(frozen=True)
class Pair:
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


def load_pair(pair: Pair, split: str) -> Sample:
    """Read one sample; every failure is a :class:`DatasetError` naming the file."""
    image = read_image(pair.image)
    mask = read_mask(pair.mask)
    if mask.shape != image.shape[:2]:
        raise DatasetError(
            f"{pair.mask}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
            f"{pair.image.name} size {image.shape[1]}x{image.shape[0]}"
        )
    sample: Sample = {"image": image, "mask": mask, "name": pair.name, "split": split}
    return check_sample(sample, str(pair.image))


# ------------------------------------------------------------------------------------- locating
def _first_dir(base: Path, candidates: tuple[str, ...]) -> Optional[Path]:
    for rel in candidates:
        if (base / rel).is_dir():
            return base / rel
    return None


def _first_file(base: Path, candidates: tuple[str, ...]) -> Optional[Path]:
    for rel in candidates:
        if (base / rel).is_file():
            return base / rel
    return None


def _source_exists(base: Path, source: Source) -> bool:
    if isinstance(source, Csv):
        return _first_file(base, source.files) is not None
    return _first_dir(base, source.images) is not None and _first_dir(base, source.masks) is not None


def _describe(source: Source) -> str:
    if isinstance(source, Csv):
        return " or ".join(source.files)
    return f"{' or '.join(source.images)} + {' or '.join(source.masks)}"


def _candidate_roots(folder: Path) -> Iterator[Path]:
    """``folder``, then its sub-folders up to :data:`_SEARCH_DEPTH` levels, breadth first, sorted (lazily)."""
    yield folder
    level = [folder]
    for _ in range(_SEARCH_DEPTH):
        level = [
            d for parent in level for d in sorted(parent.iterdir()) if d.is_dir() and not d.name.startswith((".", "_"))
        ]
        yield from level


def dataset_folder(spec: RealSpec, data_root: str | Path) -> Optional[Path]:
    """The first of ``spec.folders`` that exists under ``data_root``, or None."""
    return _first_dir(Path(data_root), spec.folders)


def locate(spec: RealSpec, folder: str | Path) -> tuple[Layout, Path]:
    """Find the first layout of ``spec`` whose train and test sources exist in ``folder`` (or below it).

    Raises:
        DatasetError: When ``folder`` is missing or holds no supported layout; the message lists
            what was looked for.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: dataset folder of {spec.name!r} not found (see README, 'Datasets')")
    for base in _candidate_roots(folder):
        for layout in spec.layouts:
            if all(_source_exists(base, s) for s in layout.train + layout.test + layout.val):
                return layout, base
    partial = _partial_layout(spec, folder)
    if partial:
        raise DatasetError(f"{folder}: incomplete {partial}")
    wanted = "; ".join(
        f"{lay.name}: " + ", ".join(_describe(s) for s in lay.train + lay.test + lay.val) for lay in spec.layouts
    )
    raise DatasetError(f"{folder}: no supported layout of {spec.name!r} found (looked for {wanted})")


def _partial_layout(spec: RealSpec, folder: Path) -> Optional[str]:
    """The layout most of whose sources exist (in ``folder`` or below), as "<layout> layout of <name> in
    <base>: found X; missing Y", or None when no source of any layout exists."""
    best: Optional[tuple[int, str]] = None
    for base in _candidate_roots(folder):
        for layout in spec.layouts:
            sources = layout.train + layout.test + layout.val
            have = [s for s in sources if _source_exists(base, s)]
            if have and (best is None or len(have) > best[0]):
                missing = [_describe(s) for s in sources if s not in have]
                best = (
                    len(have),
                    f"{layout.name} layout of {spec.name!r} in {base}: found {', '.join(_describe(s) for s in have)}; "
                    f"missing {', '.join(missing)}",
                )
    return best[1] if best else None


# -------------------------------------------------------------------------------------- pairing
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


def split_order(names: list[str]) -> list[str]:
    """Names in the fixed, machine-independent split order (sha256 of seed and name)."""
    return sorted(names, key=lambda n: (hashlib.sha256(f"{SPLIT_SEED}|{n}".encode()).hexdigest(), n))


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


def draw_validation(names: list[str], fraction: float) -> set[str]:
    """The validation names drawn from a training pool (see module docstring)."""
    if fraction <= 0 or len(names) < 2:
        return set()
    k = min(len(names) - 1, max(1, round(fraction * len(names))))
    return set(split_order(sorted(names))[:k])


def scan(spec: RealSpec, folder: str | Path) -> Scan:
    """Locate the layout in ``folder`` and pair the files of every split (no image is decoded)."""
    layout, base = locate(spec, folder)
    problems: list[str] = []
    pool = _pairs(base, layout.train, problems)
    test = _pairs(base, layout.test, problems)
    if layout.val:
        val, train = _pairs(base, layout.val, problems), pool
    else:
        held = draw_validation([p.name for p in pool], spec.val_fraction)
        val, train = [p for p in pool if p.name in held], [p for p in pool if p.name not in held]
    splits = {"train": train, "val": val, "test": test}
    for split, pairs in splits.items():
        if not pairs and (split != "val" or layout.val or spec.val_fraction > 0):
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
    return Scan(spec, layout, base, splits, problems, warnings, val_drawn=not layout.val)


def _raise_problems(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - _MAX_LISTED} more problems)" if len(problems) > _MAX_LISTED else ""
        raise DatasetError("; ".join(problems[:_MAX_LISTED]) + more)


# ------------------------------------------------------------------------------- split records
def _write_split_record(result: Scan, cache_dir: str | Path) -> Path:
    path = Path(cache_dir) / "splits" / f"{result.spec.name}__{result.layout.name}.json"
    record = {
        "dataset": result.spec.name,
        "layout": result.layout.name,
        "seed": SPLIT_SEED,
        "val_fraction": result.spec.val_fraction if result.val_drawn else None,
        "val_drawn": result.val_drawn,
        "counts": {split: len(pairs) for split, pairs in result.splits.items()},
        "splits": {split: sorted(p.name for p in pairs) for split, pairs in result.splits.items()},
    }
    data = (json.dumps(record, indent=1) + "\n").encode()
    try:
        current = path.read_bytes()
    except OSError:
        current = None
    if current != data:
        atomic_write(path, data)
        counts = record["counts"]
        logger.info(
            "%s (%s layout in %s): train %d / val %d / test %d%s; split written to %s",
            result.spec.name,
            result.layout.name,
            result.root,
            counts["train"],
            counts["val"],
            counts["test"],
            f" (validation drawn: {result.spec.val_fraction:.0%} of the training pool)" if result.val_drawn else "",
            path,
        )
    return path


def _fingerprint(pairs: list[Pair]) -> str:
    h = hashlib.sha256()
    for pair in pairs:
        for path in (pair.image, pair.mask):
            st = path.stat()
            h.update(f"{pair.name}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def verify_pairs(pairs: list[Pair], split: str) -> list[str]:
    """Decode every pair; the problems found, each naming its file."""
    problems = []
    for pair in pairs:
        try:
            load_pair(pair, split)
        except DatasetError as err:
            problems.append(str(err))
    return problems


def _verify_once(name: str, split: str, pairs: list[Pair], cache_dir: str | Path) -> None:
    stamp = Path(cache_dir) / "verified" / f"{name}__{split}__{_fingerprint(pairs)}.ok"
    if stamp.is_file():
        return
    logger.info("%s/%s: verifying %d image/mask pairs (once)", name, split, len(pairs))
    _raise_problems(verify_pairs(pairs, split))
    atomic_write(stamp, f"{len(pairs)} pairs verified\n".encode())


# -------------------------------------------------------------------------------------- dataset
class RealDataset(SegmentationDataset):
    """One split of a real dataset read from ``data.root``.

    Args:
        spec: The dataset's description.
        split: ``"train"``, ``"val"`` or ``"test"``.
        cfg: Data options (``root`` for the files, ``cache_dir`` for split records and stamps).

    Raises:
        DatasetError: On a missing folder, unsupported layout, pairing problem, empty split or a
            file that fails verification; the message names the file.
    """

    def __init__(self, spec: RealSpec, split: str, cfg: DataConfig) -> None:
        if split not in SPLITS:
            raise DatasetError(f"{spec.name}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        folder = dataset_folder(spec, cfg.root)
        if folder is None:
            tried = ", ".join(str(Path(cfg.root) / f) for f in spec.folders)
            raise DatasetError(f"{tried}: dataset {spec.name!r} not found under data.root (see README, 'Datasets')")
        result = scan(spec, folder)
        _raise_problems(result.problems)
        for warning in result.warnings:
            logger.warning(warning)
        _write_split_record(result, cfg.cache_dir)
        self.info, self.split, self.spec = spec.info, split, spec
        self.layout, self.root = result.layout.name, result.root
        self.pairs = result.splits[split]
        if not self.pairs and split != "val":  # a validation split is optional (checkpoint selection falls back)
            raise DatasetError(f"{result.root}: empty {split} split of {spec.name!r} ({result.layout.name} layout)")
        _verify_once(spec.name, split, self.pairs, cfg.cache_dir)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        return load_pair(self.pairs[index], self.split)


REAL_SPECS: dict[str, RealSpec] = {}


def register_real(spec: RealSpec) -> Callable[[str, DataConfig], SegmentationDataset]:
    """Register ``spec`` as a dataset builder (``DATASETS``) and remember it for ``prepare``/``list``."""

    def build(split: str, cfg: DataConfig) -> SegmentationDataset:
        return RealDataset(spec, split, cfg)

    build.__doc__ = f"{spec.name}: {spec.source}"
    register_dataset(spec.name, spec.info)(build)
    REAL_SPECS[spec.name] = spec
    return build


def convlora_csv(train: str = "train.csv", val: str = "val.csv", test: tuple[str, ...] = ("test.csv",)) -> Layout:
    """The Conv-LoRA CSV archive layout (``train.csv``, ``val.csv``, ``test*.csv``)."""
    return Layout("convlora_csv", train=(Csv((train,)),), val=(Csv((val,)),), test=(Csv(test),))
