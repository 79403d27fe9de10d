"""Where a real dataset's files are: its layouts, and locating the one present on disk.

A real dataset lives in one sub-folder of ``data.root`` (:attr:`RealSpec.folders` lists the accepted
names, e.g. ``polyp`` or Conv-LoRA's archive name). Inside it, the files may follow one of several
*layouts* (:class:`Layout`): the dataset's public release (or the PraNet / SINet re-packaging) and the
Conv-LoRA CSV archives (``train.csv``, ``val.csv``, ``test*.csv`` with ``image,label`` columns, paths
relative to the CSV; InfoSAM's ``datasets/dataset_csv.py`` reads the same files). The first layout whose
folders / CSV files exist is used; it may sit in the dataset folder itself or up to two levels below it
(an archive unpacked into ``polyp/polyp/`` is found).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import numpy as np

from bench.contracts.dataset import DatasetError, DatasetInfo

_SEARCH_DEPTH = 2


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
        read_labels: ``semantic`` datasets: reads one label-map file as (H, W) uint8 class indices (default
            :func:`datasets._labels.read_label_map`: P or L PNGs); unused by binary datasets.
    """

    name: str
    info: DatasetInfo
    folders: tuple[str, ...]
    layouts: tuple[Layout, ...]
    published: dict[str, int] = field(default_factory=dict)
    val_fraction: float = 0.0
    source: str = ""
    read_labels: Optional[Callable[[Path], np.ndarray]] = None


def convlora_csv(train: str = "train.csv", val: str = "val.csv", test: tuple[str, ...] = ("test.csv",)) -> Layout:
    """The Conv-LoRA CSV archive layout (``train.csv``, ``val.csv``, ``test*.csv``)."""
    return Layout("convlora_csv", train=(Csv((train,)),), val=(Csv((val,)),), test=(Csv(test),))


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
                # a source can serve two splits (train and test from one folder): each is named once
                found = dict.fromkeys(_describe(s) for s in have)
                missing = dict.fromkeys(_describe(s) for s in sources if s not in have)
                best = (
                    len(have),
                    f"{layout.name} layout of {spec.name!r} in {base}: found {', '.join(found)}; "
                    f"missing {', '.join(missing)}",
                )
    return best[1] if best else None
