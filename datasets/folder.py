"""Your own data without code: ``datasets=[folder] data.folder.root=DIR`` (options under ``data.folder.*``).

``DIR`` holds ``images/`` and ``masks/`` (names: ``data.folder.images`` / ``masks``; a mask pairs with the
image of the same stem, plus ``mask_suffix``), or a CSV of ``image,label`` pairs (``data.folder.csv``,
paths relative to the CSV, as the Conv-LoRA archives). Splits: optional files of sample names (file
stems, one a line: ``train_list``, ``val_list``, ``test_list``, relative to ``DIR``); without
``test_list`` the first ``test_fraction`` of the samples in the fixed split order of
``datasets/_splits.py`` is the test split, and ``val_fraction`` of the training pool is drawn as
validation (without ``val_list``, and only with ``data.hold_out_val`` true: a protocol that never reads a
validation split, as ``infosam``, trains on the whole pool). ``metrics`` (keys of ``bench/eval/metrics.py``),
``eval_prompt`` and ``epochs`` set the protocol.
Every rule of the real datasets applies (pairing, binary masks, sizes, verification before a run);
``prepare dataset=folder data.folder.root=DIR`` checks a copy.

**Label maps.** With ``data.folder.classes`` set, the dataset is ``semantic``: every mask is a label map (a
``P`` or ``L`` PNG whose pixel values are class indices, ``data.folder.ignore_index`` where unlabelled; read by
:func:`datasets._labels.read_label_map`) and a value that is neither is an error naming the file. ``classes``
is a classes file, one class name a line (line i = class i; blank lines skipped), relative to ``DIR`` or
absolute; from Python it may also be a list of names. The metrics default to ``acc`` and ``miou`` (the binary
default ``iou, dice`` is replaced); binary metric keys are refused.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from bench.config import ConfigError, DataConfig, FolderDataConfig
from bench.contracts.dataset import SPLITS, DatasetError, DatasetInfo, Sample, SegmentationDataset, register_dataset
from datasets._layouts import Csv, Folder, Layout, RealSpec
from datasets._pairing import Pair, Scan, _pairs, _raise_problems
from datasets._splits import draw_validation, split_order
from datasets._verify import _verify_once, load_pair

NAME = "folder"
DEFAULT_INFO = DatasetInfo(family="folder", metrics=("iou", "dice"))


BINARY_DEFAULT_METRICS = ("iou", "dice")  # FolderDataConfig.metrics' default
SEMANTIC_DEFAULT_METRICS = ("acc", "miou")


def folder_classes(cfg: FolderDataConfig) -> Optional[tuple[str, ...]]:
    """The class names of a label-map folder (``data.folder.classes``: a classes file or a list), or None.

    Raises:
        DatasetError: A classes file that is missing or unreadable (naming it).
        ConfigError: Fewer than two classes, a repeated name, or an ignore index that is a class id.
    """
    if cfg.classes is None or cfg.classes == "":
        return None
    if isinstance(cfg.classes, (list, tuple)):
        names, where = [str(c).strip() for c in cfg.classes], "data.folder.classes"
    else:
        path = Path(cfg.classes)
        if not path.is_absolute() and cfg.root:
            path = Path(cfg.root) / path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DatasetError(f"{path}: classes file (data.folder.classes) not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(f"{path}: unreadable classes file ({err})") from None
        names, where = [line.strip() for line in text.splitlines()], str(path)
    names = [n for n in names if n]
    if len(names) < 2:
        raise ConfigError(f"{where}: a label-map folder needs at least two class names, got {names}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{where}: class name(s) listed twice: {', '.join(repeated)}")
    if cfg.ignore_index < len(names):
        raise ConfigError(f"data.folder.ignore_index={cfg.ignore_index} is a class id (0..{len(names) - 1} of {where})")
    return tuple(names)


def folder_info(cfg: FolderDataConfig) -> DatasetInfo:
    """The protocol facts of the folder dataset: binary, or ``semantic`` when ``data.folder.classes`` is set
    (see the module docstring); ConfigError on metric keys the task does not report."""
    from bench.eval.metrics import METRICS, SEMANTIC_METRICS

    classes = folder_classes(cfg)
    if classes is not None:
        metrics = tuple(cfg.metrics)
        if metrics == BINARY_DEFAULT_METRICS:
            metrics = SEMANTIC_DEFAULT_METRICS
        unknown = [m for m in metrics if m not in SEMANTIC_METRICS]
        if unknown or not metrics:
            raise ConfigError(
                f"data.folder.metrics: {unknown or 'empty list'} not reported for a label-map folder "
                f"(data.folder.classes is set); valid: {', '.join(SEMANTIC_METRICS)}"
            )
        return DatasetInfo(
            family="folder",
            metrics=metrics,
            eval_prompt=cfg.eval_prompt,
            epochs=cfg.epochs,
            task="semantic",
            classes=classes,
            ignore_index=cfg.ignore_index,
        )
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


def scan_folder(cfg: FolderDataConfig, hold_out_val: bool = True) -> Scan:
    """Pair the files under ``cfg.root`` and split them (nothing decoded); problems are listed, not raised.

    ``hold_out_val`` (``data.hold_out_val``): without ``val_list``, draw ``val_fraction`` of the training pool as
    validation; when False the train split is the whole pool and ``val`` is empty.
    """
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
    elif not hold_out_val:
        val, train = [], pool
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
    drawn = not cfg.val_list and hold_out_val
    return Scan(spec, layout, root, splits, problems, [], val_drawn=drawn, hold_out_val=hold_out_val)


class FolderDataset(SegmentationDataset):
    """One split of the user's folder dataset (see the module docstring)."""

    def __init__(self, split: str, cfg: DataConfig) -> None:
        if split not in SPLITS:
            raise DatasetError(f"{NAME}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        result = scan_folder(cfg.folder, cfg.hold_out_val)
        _raise_problems(result.problems)
        self.info, self.split, self.root = result.spec.info, split, result.root
        self.spec: Optional[RealSpec] = result.spec if self.info.task == "semantic" else None
        self.pairs = result.splits[split]
        if not self.pairs and split != "val":  # a validation split is optional (checkpoint selection falls back)
            raise DatasetError(f"{result.root}: empty {split} split of the folder dataset")
        # the stamp is keyed by the files themselves (and a semantic split's classes)
        _verify_once(NAME, split, self.pairs, cfg.cache_dir, self.spec)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        return load_pair(self.pairs[index], self.split, self.spec)


@register_dataset(NAME, DEFAULT_INFO)
def folder(split: str, cfg: DataConfig) -> SegmentationDataset:
    return FolderDataset(split, cfg)
