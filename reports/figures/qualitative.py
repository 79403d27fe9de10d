"""The qualitative figure of a sweep, ``<sweep>_qualitative.{png,pdf}`` (as Conv-LoRA's and InfoSAM's).

Rows are the kept test images of every dataset (``eval.keep_masks``: the first names, the same for every
method; :mod:`bench.data.masks`), columns the image with its evaluation prompt, the ground truth, then each
table row's binary prediction overlaid on the image (GT outline in green, prompt drawn, the image's
headline metric in the corner; images larger than :data:`MAX_SIDE` pixels are drawn downsampled). Each
(dataset, row) shows its lowest complete seed. A row without a
complete run, or whose runs kept no masks (older runs), is a blank panel saying so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from bench.config import BenchConfig, row_label
from bench.config.protocols import get_protocol
from bench.data.masks import read_masks

from ..distributions import per_image_frame
from ..figfiles import pyplot, save_figure
from ..labels import metric_label
from . import FIGURES, Named, stem_of

log = logging.getLogger(__name__)

PRED_RGB = np.array([1.0, 0.35, 0.0])
GT_RGB = np.array([0.1, 0.85, 0.2])
PANEL_INCHES = 1.8
MAX_SIDE = 200  # panels show images at most this many pixels wide or high (keeps the PNG and PDF small)


@dataclass
class Kept:
    """The kept masks of one (dataset, row): from run ``run`` (seed ``seed``), ``masks.json`` as read."""

    run: str
    seed: int
    index: dict[str, Any]

    def entry(self, name: str) -> Optional[dict[str, Any]]:
        return next((e for e in self.index["images"] if e["name"] == name), None)


def collect(runs_dir: str | Path, runs: Named, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Kept]]:
    """``dataset -> row label -> Kept`` for the lowest complete seed that kept masks."""
    out: dict[str, dict[str, Kept]] = {}
    for run, name in sorted(runs, key=lambda r: r[0].seed):
        if name not in records or row_label(run) in out.get(run.dataset, {}):
            continue
        index = read_masks(Path(runs_dir) / name)
        if index and index["images"]:
            out.setdefault(run.dataset, {})[row_label(run)] = Kept(name, run.seed, index)
    return out


def _overlay(image: np.ndarray, mask: np.ndarray, rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    out = image.astype(np.float64) / 255.0
    out[mask] = (1 - alpha) * out[mask] + alpha * rgb
    return out


def _load(path: Path, scale: float = 1.0) -> np.ndarray:
    """An image or mask, resized by ``scale`` (masks with nearest neighbour)."""
    with Image.open(path) as im:
        if scale != 1.0:
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            im = im.resize(size, Image.NEAREST if im.mode in ("L", "1") else Image.BILINEAR)
        return np.asarray(im)


def _scale(path: Path) -> float:
    """The factor that brings an image's longest side down to :data:`MAX_SIDE` (1 for small images)."""
    with Image.open(path) as im:
        return min(1.0, MAX_SIDE / max(im.size))


def _draw_prompt(ax: Any, entry: dict[str, Any], scale: float) -> None:
    import matplotlib.patches as patches

    if entry.get("box"):
        x0, y0, x1, y1 = (scale * v for v in entry["box"])
        ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="yellow", linewidth=1.2))
    if entry.get("points"):
        pts = scale * np.asarray(entry["points"], dtype=float).reshape(-1, 2)
        labels = np.asarray(entry.get("labels") or [1] * len(pts))
        ax.scatter(*pts[labels == 1].T, marker="o", s=22, c="lime", edgecolors="black", linewidths=0.6)
        ax.scatter(*pts[labels != 1].T, marker="x", s=22, c="red", linewidths=1.2)


def _blank(ax: Any, text: str, shape: tuple[int, ...]) -> None:
    ax.set_xlim(0, shape[1])
    ax.set_ylim(shape[0], 0)
    ax.set_aspect("equal")
    ax.set_facecolor("#eeeeee")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=7, color="grey", transform=ax.transAxes)


def _score_text(scores: pd.DataFrame, label: str, dataset: str, seed: int, name: str) -> str:
    hit = scores[(scores.method == label) & (scores.dataset == dataset) & (scores.seed == seed) & (scores.name == name)]
    if hit.empty:
        return ""
    metric = hit["metric"].iloc[0]
    return f"{metric_label(metric)} {100 * hit['value'].iloc[0]:.1f}"


def draw(
    stem: Path, kept: dict[str, dict[str, Kept]], labels: Sequence[str], scores: pd.DataFrame, completed: set
) -> list[Path]:
    """The figure: ``kept`` from :func:`collect`, columns in ``labels`` order; ``completed`` holds the
    (dataset, label) pairs with a complete run (the others are "no run", not "no masks")."""
    plt = pyplot()
    rows: list[tuple[str, str]] = []
    for dataset, by_label in kept.items():
        first = next(k for k in (by_label.get(lab) for lab in labels) if k is not None)
        rows += [(dataset, e["name"]) for e in first.index["images"]]
    ncols = 2 + len(labels)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(PANEL_INCHES * ncols, PANEL_INCHES * len(rows)), squeeze=False)
    for i, (dataset, name) in enumerate(rows):
        by_label = kept[dataset]
        base = next(e for e in (k.entry(name) for k in by_label.values()) if e is not None)
        scale = _scale(base["image"])
        image, gt = _load(base["image"], scale), _load(base["gt"], scale) > 127
        axes[i][0].imshow(image)
        _draw_prompt(axes[i][0], base, scale)
        axes[i][0].set_ylabel(f"{dataset}\n{name}", fontsize=7)
        axes[i][1].imshow(_overlay(image, gt, GT_RGB))
        for j, label in enumerate(labels, start=2):
            ax = axes[i][j]
            k = by_label.get(label)
            entry = k.entry(name) if k else None
            if entry is None:
                _blank(ax, "no run" if (dataset, label) not in completed else "no masks kept", gt.shape)
                continue
            pred = _load(entry["pred"], scale) > 127
            ax.imshow(_overlay(_load(entry["image"], scale), pred, PRED_RGB))
            if gt.any():
                ax.contour(gt, levels=[0.5], colors=[tuple(GT_RGB)], linewidths=0.7)
            _draw_prompt(ax, entry, scale)
            text = _score_text(scores, label, dataset, k.seed, name) if k else ""
            if text:
                ax.text(
                    0.02, 0.02, text, transform=ax.transAxes, fontsize=6, color="white", va="bottom",
                    bbox={"facecolor": "black", "alpha": 0.55, "pad": 1, "linewidth": 0},
                )  # fmt: skip
    for j, title in enumerate(["image + prompt", "ground truth", *labels]):
        axes[0][j].set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    return save_figure(fig, stem, dpi=90, tight=False)  # tight_layout above: no second rendering


@FIGURES.register("qualitative", order=3)
def write_qualitative(cfg: BenchConfig, runs: Named, records: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """``<sweep>_qualitative.{png,pdf}`` in ``out`` if any complete run kept masks; else nothing."""
    found = collect(cfg.runs_dir, runs, records)
    if not found:
        log.info("%s: no complete run kept masks (eval.keep_masks), no qualitative figure", cfg.sweep)
        return []
    kept = {d: found[d] for d in dict.fromkeys(r.dataset for r, _ in runs) if d in found}  # the sweep's order
    labels = list(dict.fromkeys(row_label(r) for r, _ in runs))
    completed = {(r.dataset, row_label(r)) for r, name in runs if name in records}
    definition = cfg.report.metrics or get_protocol(cfg.protocol).metrics
    scores = per_image_frame(cfg.runs_dir, runs, records, definition)
    return draw(out / f"{stem_of(cfg)}_qualitative", kept, labels, scores, completed)
