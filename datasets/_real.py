"""The real datasets: one split read from ``data.root``, and registering a dataset's description.

A split is built in four steps, each with its own module and rules (the same for every dataset, so
nothing is skipped by accident):

* :mod:`datasets._layouts`: the dataset folder and the layout of its files;
* :mod:`datasets._pairing`: images and masks paired into the splits ("Pairing");
* :mod:`datasets._splits`: the validation split drawn from the training pool ("Validation split"),
  recorded here in ``<data.cache_dir>/splits/<dataset>__<layout>.json`` and logged;
* :mod:`datasets._verify`: every pair decoded once before a run ("Masks", "Verification").
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

from bench.config import DataConfig
from bench.contracts.dataset import SPLITS, DatasetError, Sample, SegmentationDataset, register_dataset
from bench.fileio import atomic_write
from datasets._layouts import RealSpec, dataset_folder
from datasets._pairing import Scan, _raise_problems, scan
from datasets._splits import SPLIT_SEED
from datasets._verify import _verify_once, load_pair

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- split records
# Here, not in _splits.py: it reads a Scan (datasets._pairing), and _pairing uses _splits' order.
def split_record_path(result: Scan, cache_dir: str | Path) -> Path:
    """``<cache_dir>/splits/<dataset>__<layout>.json``; ``..__<layout>__no_val.json`` when ``data.hold_out_val``
    is false on a layout without validation files (the other split of the same files, kept apart)."""
    suffix = "" if result.hold_out_val or result.layout.val else "__no_val"
    return Path(cache_dir) / "splits" / f"{result.spec.name}__{result.layout.name}{suffix}.json"


def _write_split_record(result: Scan, cache_dir: str | Path) -> Path:
    path = split_record_path(result, cache_dir)
    record = {
        "dataset": result.spec.name,
        "layout": result.layout.name,
        "seed": SPLIT_SEED,
        "val_fraction": result.spec.val_fraction if result.val_drawn else None,
        "val_drawn": result.val_drawn,
        "hold_out_val": result.hold_out_val,
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
            _val_note(result),
            path,
        )
    return path


def _val_note(result: Scan) -> str:
    if result.val_drawn:
        return f" (validation drawn: {result.spec.val_fraction:.0%} of the training pool)"
    if not result.layout.val:
        return " (no validation held back: data.hold_out_val=false, the whole training pool trains)"
    return ""


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
        result = scan(spec, folder, cfg.hold_out_val)
        _raise_problems(result.problems)
        for warning in result.warnings:
            logger.warning(warning)
        _write_split_record(result, cfg.cache_dir)
        self.info, self.split, self.spec = spec.info, split, spec
        self.layout, self.root = result.layout.name, result.root
        self.pairs = result.splits[split]
        if not self.pairs and split != "val":  # a validation split is optional (checkpoint selection falls back)
            raise DatasetError(f"{result.root}: empty {split} split of {spec.name!r} ({result.layout.name} layout)")
        _verify_once(spec.name, split, self.pairs, cfg.cache_dir, spec)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        return load_pair(self.pairs[index], self.split, self.spec)


REAL_SPECS: dict[str, RealSpec] = {}


def register_real(spec: RealSpec) -> Callable[[str, DataConfig], SegmentationDataset]:
    """Register ``spec`` as a dataset builder (``DATASETS``) and remember it for ``prepare``/``list``."""

    def build(split: str, cfg: DataConfig) -> SegmentationDataset:
        return RealDataset(spec, split, cfg)

    build.__doc__ = f"{spec.name}: {spec.source}"
    register_dataset(spec.name, spec.info)(build)
    REAL_SPECS[spec.name] = spec
    return build
