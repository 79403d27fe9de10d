"""Check a downloaded copy of a real dataset, and tell which datasets are present under ``data.root``.

``python run_benchmark.py prepare dataset=NAME src=PATH`` locates the layout in ``PATH`` (the folder
that belongs at ``<data.root>/<folder>``, see README "Datasets"), pairs images and masks, decodes every
file (readable, not truncated, mask binary, mask size = image size), compares the split sizes with the
published ones and prints every problem with its file name. It only reads ``PATH``: nothing is
written, moved or converted there. Without ``src`` it checks the copy under ``data.root``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import numpy as np

from bench.config import CocoDataConfig, ConfigError, FolderDataConfig
from bench.config.overrides import command_args
from bench.contracts.dataset import DATASETS, DatasetError
from bench.runs.sweep import load_config
from datasets._layouts import RealSpec, dataset_folder, locate
from datasets._pairing import Scan, scan
from datasets._real import REAL_SPECS
from datasets._verify import load_pair
from datasets.coco import coco_classes, coco_info, load_image, scan_split
from datasets.folder import scan_folder

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass
class PrepareReport:
    """The outcome of checking one copy: ``ok`` is False when a run on it would fail."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        out = list(self.lines)
        if self.warnings:
            out += ["warnings:"] + [f"  - {w}" for w in self.warnings]
        if self.problems:
            out += [f"problems ({len(self.problems)}):"] + [f"  - {p}" for p in self.problems]
        out.append("OK: ready to use" if self.ok else f"NOT READY: {len(self.problems)} problem(s) to fix")
        return "\n".join(out)


def real_spec(name: str) -> RealSpec:
    """The spec of a registered real dataset; ConfigError naming the valid choices otherwise."""
    DATASETS.names()  # discovery: the dataset modules fill REAL_SPECS when they are imported
    if name not in REAL_SPECS:
        kind = "a generated dataset: nothing to prepare" if name in DATASETS else "unknown dataset"
        raise ConfigError(f"{name!r} is {kind}; real datasets: {', '.join(sorted(REAL_SPECS))}")
    return REAL_SPECS[name]


def _opened(header: str, read: Callable[..., T], *args: Any) -> tuple[PrepareReport, Optional[T]]:
    """A report starting with ``header`` and what ``read(*args)`` returns; None (its error in the report's
    problems) when reading raises a :class:`DatasetError`."""
    report = PrepareReport()
    report.lines.append(header)
    try:
        return report, read(*args)
    except DatasetError as err:
        report.problems.append(str(err))
        return report, None


def check_copy(name: str, src: str | Path, data_root: Optional[str | Path] = None) -> PrepareReport:
    """Check the copy of dataset ``name`` in folder ``src`` (read-only); see the module docstring."""
    spec = real_spec(name)
    src = Path(src)
    report, result = _opened(f"dataset {spec.name} ({spec.info.family}; published at: {spec.source})", scan, spec, src)
    if result is None:
        return report
    _check_scan(report, spec, result)
    if data_root is not None:
        target = Path(data_root) / spec.folders[0]
        if not any((Path(data_root) / f).resolve() == src.resolve() for f in spec.folders):
            report.lines.append(
                f"to use it: place or symlink this folder at {target} (e.g. ln -s {src.resolve()} {target})"
            )
    return report


def check_folder(cfg: FolderDataConfig) -> PrepareReport:
    """``prepare dataset=folder data.folder.root=DIR``: the same checks on the user's own folder dataset."""
    report, result = _opened(f"dataset folder (your own data: {cfg.root})", scan_folder, cfg)
    if result is None:
        return report
    _check_scan(report, result.spec, result)
    report.lines.append(
        f"metrics: {', '.join(result.spec.info.metrics)}; evaluation prompt: {result.spec.info.eval_prompt}"
    )
    return report


def check_coco(cfg: CocoDataConfig) -> PrepareReport:
    """``prepare dataset=coco data.coco.root=DIR``: read every split's JSON and decode every image and mask."""
    report, info = _opened(f"dataset coco (COCO-style instances: {cfg.root})", coco_info, cfg)
    if info is None:
        return report
    report.lines.append(f"classes ({len(info.classes)}): {', '.join(info.classes)}")
    class_ids = list(coco_classes(cfg))
    seen: dict[str, str] = {}
    for split in ("train", "val", "test"):
        try:
            data = scan_split(cfg, split)
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        if not data.images and split != "val":
            report.problems.append(f"{data.json_path}: empty {split} split (no images)")
        objects = empty = 0
        for img in data.images:
            if img.name in seen:
                report.problems.append(f"{data.json_path}: sample {img.name!r} is also in the {seen[img.name]} split")
            seen[img.name] = split
            try:
                sample = load_image(img, data.json_path, class_ids, split, info)
            except DatasetError as err:
                report.problems.append(str(err))
                continue
            objects += len(sample["instances"])
            empty += not sample["instances"]
        line = f"  {split:<5} {len(data.images):>5} images, {objects} objects"
        if data.crowd:
            line += f" ({data.crowd} crowd annotation(s) skipped)"
        report.lines.append(line)
        if empty:
            report.warnings.append(f"coco/{split}: {empty} image(s) without objects (nothing to prompt)")
    report.lines.append(f"metrics: {', '.join(info.metrics)}; evaluation prompt: {info.eval_prompt}")
    return report


def _check_scan(report: PrepareReport, spec: RealSpec, result: Scan) -> None:
    """Decode every pair of a scanned copy and add the split lines, problems and warnings to ``report``."""
    report.lines.append(f"layout {result.layout.name!r} found in {result.root}")
    report.problems.extend(result.problems)
    report.warnings.extend(result.warnings)
    semantic = spec.info.task == "semantic"
    seen = np.zeros(spec.info.num_classes, np.int64)  # semantic: images in which each class occurs
    for split, pairs in result.splits.items():
        sizes: list[tuple[int, int]] = []
        empty = 0
        for pair in pairs:
            try:
                sample = load_pair(pair, split, spec if semantic else None)
            except DatasetError as err:
                report.problems.append(str(err))
                continue
            target = sample["labels"] if semantic else sample["mask"]
            sizes.append(target.shape)
            if semantic:
                present = np.unique(target)
                seen[present[present < spec.info.num_classes]] += 1
                empty += not np.any((target > 0) & (target != spec.info.ignore_index))
            else:
                empty += not target.any()
        line = f"  {split:<5} {len(pairs):>5} pairs"
        if split == "val" and result.val_drawn:
            line += f" (drawn: {spec.val_fraction:.0%} of the training pool, fixed order)"
        if sizes:
            hw = np.array(sizes)
            line += f"; H {hw[:, 0].min()}-{hw[:, 0].max()}, W {hw[:, 1].min()}-{hw[:, 1].max()}"
        report.lines.append(line)
        if empty and semantic:
            report.warnings.append(f"{spec.name}/{split}: {empty} label map(s) with background / ignore only")
        elif empty:
            report.warnings.append(f"{spec.name}/{split}: {empty} mask(s) without foreground (skipped in training)")
    if result.val_drawn:  # what a run trains on depends on data.hold_out_val: say both
        pool = len(result.splits.get("train", ())) + len(result.splits.get("val", ()))
        report.lines.append(
            f"  training: train above with data.hold_out_val=true (protocols clean, convlora); all {pool} pairs of "
            "the training pool, no validation split, with data.hold_out_val=false (protocol infosam, as its code)"
        )
    if semantic:
        counts = ", ".join(f"{c} {int(n)}" for c, n in zip(spec.info.classes, seen))
        report.lines.append(
            f"  classes ({spec.info.num_classes}, ignore index {spec.info.ignore_index}; images with each): {counts}"
        )
        absent = [c for c, n in zip(spec.info.classes, seen) if n == 0]
        if absent:
            report.warnings.append(f"{spec.name}: class(es) never present: {', '.join(absent)}")


def dataset_status(data_root: str | Path) -> dict[str, str]:
    """Per registered dataset: ``"generated"``, ``"present (<layout>: <path>)"`` or ``"missing (...)"``.

    Only looks for the layout's folders and files (fast); ``prepare`` decodes the files.
    """

    out = {}
    for name in DATASETS.names():
        spec = REAL_SPECS.get(name)
        if name == "folder":
            out[name] = "your own images + masks (data.folder.root=DIR)"
            continue
        if name == "coco":
            out[name] = "your own COCO-style instance JSONs + images (data.coco.root=DIR)"
            continue
        if spec is None:
            out[name] = "generated"
            continue
        folder = dataset_folder(spec, data_root)
        if folder is None:
            out[name] = f"missing ({Path(data_root) / spec.folders[0]})"
            continue
        try:
            layout, base = locate(spec, folder)
        except DatasetError:
            out[name] = f"missing (no supported layout in {folder})"
            continue
        out[name] = f"present ({layout.name}: {base})"
    return out


def prepare_command(args: list[str]) -> str:
    """``prepare dataset=NAME [src=PATH]``: check a downloaded copy (read-only); problems exit with code 2."""
    pairs = command_args(args)
    name, src = pairs.pop("dataset", ""), pairs.pop("src", "")
    if not name:
        raise ConfigError("prepare needs dataset=NAME (and src=PATH, the downloaded copy)")
    cfg = load_config([f"{k}={v}" for k, v in pairs.items()])
    if name == "folder":
        if src:
            cfg.data.folder.root = src
        report = check_folder(cfg.data.folder)
        if not report.ok:
            raise ConfigError(f"prepare folder: {cfg.data.folder.root} is not ready\n{report.text()}")
        return report.text()
    if name == "coco":
        if src:
            cfg.data.coco.root = src
        report = check_coco(cfg.data.coco)
        if not report.ok:
            raise ConfigError(f"prepare coco: {cfg.data.coco.root} is not ready\n{report.text()}")
        return report.text()
    spec = real_spec(name)
    if not src:
        found = dataset_folder(spec, cfg.data.root)
        src = str(found if found is not None else f"{cfg.data.root}/{spec.folders[0]}")
    report = check_copy(name, src, cfg.data.root)
    if not report.ok:
        raise ConfigError(f"prepare {name}: {src} is not ready\n{report.text()}")
    return report.text()
