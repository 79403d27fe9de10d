"""Your own data without code: ``datasets=[folder] data.folder.root=DIR`` (options under ``data.folder.*``).

``DIR`` holds ``images/`` and ``masks/`` (names: ``data.folder.images`` / ``masks``; a mask pairs with the
image of the same stem, plus ``mask_suffix``), or a CSV of ``image,label`` pairs (``data.folder.csv``,
paths relative to the CSV, as the Conv-LoRA archives). Splits: optional files of sample names (file
stems, one a line: ``train_list``, ``val_list``, ``test_list``, relative to ``DIR``); without
``test_list`` the first ``test_fraction`` of the samples in the fixed split order of
``datasets/_splits.py`` is the test split, and ``val_fraction`` of the training pool is drawn as
validation. ``metrics`` (keys of ``bench/eval/metrics.py``), ``eval_prompt`` and ``epochs`` set the protocol.
Every rule of the real datasets applies (pairing, binary masks, sizes, verification before a run);
``prepare dataset=folder data.folder.root=DIR`` checks a copy.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.config import ConfigError, DataConfig, FolderDataConfig
from bench.contracts.dataset import SPLITS, DatasetError, DatasetInfo, Sample, SegmentationDataset, register_dataset
from datasets._layouts import Csv, Folder, Layout, RealSpec
from datasets._pairing import Pair, Scan, _pairs, _raise_problems
from datasets._splits import draw_validation, split_order
from datasets._verify import _verify_once, load_pair

NAME = "folder"
DEFAULT_INFO = DatasetInfo(family="folder", metrics=("iou", "dice"))


def folder_info(cfg: FolderDataConfig) -> DatasetInfo:
    from bench.eval.metrics import METRICS

    unknown = [m for m in cfg.metrics if m not in METRICS]
    if unknown or not cfg.metrics:
        raise ConfigError(f"data.folder.metrics: unknown {unknown or 'empty list'}; valid: {', '.join(METRICS)}")
    return DatasetInfo(family="folder", metrics=tuple(cfg.metrics), eval_prompt=cfg.eval_prompt, epochs=cfg.epochs)


def _names(root: Path, rel: str, problems: list[str]) -> list[str]:
    path = root / rel
    if not path.is_file():
        problems.append(f"{path}: split file not found")
        return []
    return [Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()]


def scan_folder(cfg: FolderDataConfig) -> Scan:
    """Pair the files under ``cfg.root`` and split them (nothing decoded); problems are listed, not raised."""
    if not cfg.root:
        raise ConfigError("the folder dataset needs data.folder.root=DIR (your images + masks, or a CSV)")
    root = Path(cfg.root)
    if not root.is_dir():
        raise DatasetError(f"{root}: data.folder.root is not a folder")
    if not 0 <= cfg.test_fraction < 1 or not 0 <= cfg.val_fraction < 1:
        raise ConfigError("data.folder.test_fraction and val_fraction must be in [0, 1)")
    source = (
        Csv((cfg.csv,)) if cfg.csv else Folder(images=(cfg.images,), masks=(cfg.masks,), mask_suffix=cfg.mask_suffix)
    )
    layout = Layout("csv" if cfg.csv else "folder", train=(source,), test=(source,))
    spec = RealSpec(
        NAME, folder_info(cfg), folders=(), layouts=(layout,), val_fraction=cfg.val_fraction, source=str(root)
    )
    if cfg.csv and not (root / cfg.csv).is_file():
        raise DatasetError(f"{root / cfg.csv}: data.folder.csv not found")
    if not cfg.csv:
        found = [d for d in (cfg.images, cfg.masks) if (root / d).is_dir()]
        missing = [d for d in (cfg.images, cfg.masks) if d not in found]
        if missing:
            raise DatasetError(
                f"{root}: found {', '.join(f'{d}/' for d in found) or 'neither folder'}, missing "
                f"{', '.join(f'{d}/' for d in missing)} (set data.folder.images / masks, or data.folder.csv)"
            )
    problems: list[str] = []
    pairs = _pairs(root, (source,), problems)
    by_name = {p.name: p for p in pairs}

    def listed(rel: str) -> list[Pair]:
        names = _names(root, rel, problems)
        for n in names:
            if n not in by_name:
                problems.append(f"{root / rel}: {n!r} is not a sample (no image/mask pair with that stem)")
        return [by_name[n] for n in names if n in by_name]

    if cfg.test_list:
        test = listed(cfg.test_list)
    else:
        order = split_order([p.name for p in pairs])
        held = set(order[: math.ceil(cfg.test_fraction * len(order))])
        test = [p for p in pairs if p.name in held]
    test_names = {p.name for p in test}
    pool = listed(cfg.train_list) if cfg.train_list else [p for p in pairs if p.name not in test_names]
    if cfg.val_list:
        val = listed(cfg.val_list)
        train = [p for p in pool if p.name not in {v.name for v in val}] if not cfg.train_list else pool
    else:
        drawn = draw_validation([p.name for p in pool], cfg.val_fraction)
        val, train = [p for p in pool if p.name in drawn], [p for p in pool if p.name not in drawn]
    splits = {"train": train, "val": val, "test": test}
    for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
        both = sorted({p.name for p in splits[a]} & {p.name for p in splits[b]})
        if both:
            problems.append(f"{root}: {len(both)} sample(s) in both {a} and {b}, e.g. {both[0]!r}")
    for split in ("train", "test"):
        if not splits[split]:
            problems.append(f"{root}: empty {split} split")
    return Scan(spec, layout, root, splits, problems, [], val_drawn=not cfg.val_list)


class FolderDataset(SegmentationDataset):
    """One split of the user's folder dataset (see the module docstring)."""

    def __init__(self, split: str, cfg: DataConfig) -> None:
        if split not in SPLITS:
            raise DatasetError(f"{NAME}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        result = scan_folder(cfg.folder)
        _raise_problems(result.problems)
        self.info, self.split, self.root = result.spec.info, split, result.root
        self.pairs = result.splits[split]
        if not self.pairs and split != "val":  # a validation split is optional (checkpoint selection falls back)
            raise DatasetError(f"{result.root}: empty {split} split of the folder dataset")
        _verify_once(NAME, split, self.pairs, cfg.cache_dir)  # the stamp is keyed by the files themselves

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        return load_pair(self.pairs[index], self.split)


@register_dataset(NAME, DEFAULT_INFO)
def folder(split: str, cfg: DataConfig) -> SegmentationDataset:
    return FolderDataset(split, cfg)
