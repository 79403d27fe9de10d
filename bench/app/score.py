"""``run_benchmark.py score``: score predictions made anywhere under a protocol's metric definitions.

``python run_benchmark.py score protocol=NAME pred=DIR gt=DIR [out=FILE.csv]``

* ``pred`` holds one file per image: ``<stem>.npy`` (float mask **logits** at the GT's size) or
  ``<stem>.png`` (an 8-bit probability map, ``p = value / 255``; for definitions that read logits it
  becomes ``logit(p)`` with ``p`` clipped to ``[0.5/255, 1 - 0.5/255]``, so its sigmoid gives ``p`` back);
* ``gt`` holds ``<stem>.png`` masks (0/1 or 0/255, binarised as the datasets binarise).

Every image is scored under every definition (:func:`bench.eval.evaluate.definitions`) from the same
logits; the CSV has one row per image: ``name``, then the protocol's values (its own definitions, the
clean ones for the metrics it does not define), then the other definitions' as ``<definition>.<key>``.
The means are printed. Missing, extra or mismatched files stop with one error naming them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from bench.config import ConfigError
from bench.config.overrides import command_args
from bench.config.protocols import get_protocol, protocols_in_order
from bench.eval.metrics import BASE_DEFINITION

log = logging.getLogger(__name__)

PROB_EPS = 0.5 / 255
USAGE = "score protocol=NAME pred=DIR gt=DIR [out=FILE.csv]"


def _stems(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in files:
                raise ConfigError(f"{folder}: two predictions for {path.stem!r}: {files[path.stem].name}, {path.name}")
            files[path.stem] = path
    return files


def read_prediction(path: Path) -> np.ndarray:
    """(H, W) float64 logits from a ``.npy`` logit map or an 8-bit ``.png`` probability map."""
    if path.suffix.lower() == ".npy":
        try:
            logits = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: not a readable .npy array ({err})") from None
        if logits.ndim != 2 or not np.issubdtype(logits.dtype, np.floating):
            raise ConfigError(f"{path}: expected an (H, W) float array of logits, got {logits.dtype} {logits.shape}")
        return logits.astype(np.float64)
    try:
        with Image.open(path) as im:
            values = np.asarray(im.convert("L"), dtype=np.float64)
    except OSError as err:
        raise ConfigError(f"{path}: not a readable image ({err})") from None
    prob = np.clip(values / 255.0, PROB_EPS, 1 - PROB_EPS)
    return np.log(prob / (1 - prob))


def pair_files(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    """(stem, prediction, mask) for every image; missing or extra files are one error naming them."""
    for folder, what in ((pred, "pred"), (gt, "gt")):
        if not folder.is_dir():
            raise ConfigError(f"{what}={folder}: not a directory")
    preds, masks = _stems(pred, (".npy", ".png")), _stems(gt, (".png",))
    if not masks:
        raise ConfigError(f"gt={gt}: no .png masks")
    missing, extra = sorted(set(masks) - set(preds)), sorted(set(preds) - set(masks))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no prediction for {len(missing)} mask(s): {', '.join(missing[:5])}")
        if extra:
            parts.append(f"{len(extra)} prediction(s) without a mask: {', '.join(extra[:5])}")
        raise ConfigError(f"pred={pred} and gt={gt} do not pair: " + "; ".join(parts))
    return [(stem, preds[stem], masks[stem]) for stem in sorted(masks)]


def score_folder(protocol: str, pred: Path, gt: Path) -> tuple[list[dict[str, Any]], dict[str, float], list[str]]:
    """Per-image rows (protocol values first), their means, and the keys among them that the protocol's
    definitions do not define (their clean values stand in)."""
    from bench.contracts.dataset import DatasetError
    from bench.data.images import read_mask
    from bench.eval.evaluate import score_logits
    from bench.runs.runner import headline_metrics

    definition = get_protocol(protocol).metrics
    rows = []
    for stem, pred_path, mask_path in tqdm(pair_files(pred, gt), desc="score", leave=False, dynamic_ncols=True):
        try:
            mask = read_mask(mask_path)
        except DatasetError as err:
            raise ConfigError(str(err)) from None
        logits = read_prediction(pred_path)
        if logits.shape != mask.shape:
            size, expected = logits.shape[::-1], mask.shape[::-1]
            raise ConfigError(f"{pred_path}: size {size} differs from its mask {mask_path} {expected}")
        _, by_definition = score_logits(stem, logits, mask)
        row: dict[str, Any] = {"name": stem, **headline_metrics(by_definition, definition)}
        for name, values in by_definition.items():
            row.update({f"{name}.{k}": v for k, v in values.items() if k != "name"})
        rows.append(row)
    keys = [k for k in rows[0] if k != "name" and "." not in k]
    means = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    own = {k.split(".", 1)[1] for k in rows[0] if k.startswith(f"{definition}.")}
    clean = [k for k in keys if k not in own] if definition != BASE_DEFINITION else []
    return rows, means, clean


def cmd_score(args: list[str]) -> str:
    pairs = command_args(args)
    unknown = sorted(set(pairs) - {"protocol", "pred", "gt", "out"})
    if unknown or not {"pred", "gt"} <= set(pairs):
        raise ConfigError(f"usage: {USAGE}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    protocol = pairs.get("protocol", protocols_in_order()[0].name)
    get_protocol(protocol)
    rows, means, clean = score_folder(protocol, Path(pairs["pred"]), Path(pairs["gt"]))
    if "out" in pairs:
        from bench.runs.results import write_csv

        write_csv(Path(pairs["out"]), rows)
        log.info("wrote %d rows to %s", len(rows), pairs["out"])
    definition = get_protocol(protocol).metrics
    fallback = f"; clean definitions for {', '.join(clean)}, which it does not define" if clean else ""
    head = f"{len(rows)} images, protocol {protocol} ({definition} definitions{fallback}; ×100)"
    return head + "\n" + "  ".join(f"{k} {100 * v:.2f}" for k, v in means.items())
