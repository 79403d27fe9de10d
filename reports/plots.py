"""Figures of a sweep, each written as PNG and PDF (matplotlib Agg backend, seaborn).

* :func:`grid_heatmap` — InfoSAM Fig. 6: a two-key ``grid:`` (λ1 × λ2) as one heatmap panel per dataset
  (and per method row), colour and annotation = the dataset's headline metric (its first table metric),
  mean over seeds, ×100. A grid point without a complete run is blank and annotated "–".
* :func:`bf1_curves` — Fig. 7: boundary F1 against the tolerance (0–3 px), one line per method and one
  panel per dataset; per run the mean of ``per_image.csv``'s ``bf1_k`` columns, then mean ± SE over seeds.
* :func:`relation_map_figure` — Fig. 8/9: teacher and student relation maps of one probe image at every
  exported epoch (``relation_maps/epoch_NNN.npz`` of an InfoSAM run), and their value histograms (Fig. 9's
  distributions).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .aggregate import MISSING
from .figfiles import pyplot as _pyplot
from .figfiles import save_figure


def _axis_name(key: str) -> str:
    """``distill.lambda1`` -> ``λ1 (distill.lambda1)``; other keys as they are."""
    leaf = key.rsplit(".", 1)[-1]
    return f"$\\lambda_{leaf[6:]}$ ({key})" if leaf.startswith("lambda") and leaf[6:].isdigit() else key


def grid_heatmap(
    stem: Path,
    panels: dict[str, dict[tuple[object, object], list[float]]],
    keys: tuple[str, str],
    axes_values: tuple[Sequence[object], Sequence[object]],
    metric_label: dict[str, str],
) -> list[Path]:
    """Heatmaps of ``panels`` = {panel title: {(value of keys[0], value of keys[1]): per-seed values}}.

    Rows are ``keys[0]`` (in ``axes_values[0]`` order), columns ``keys[1]``. ``metric_label`` names the
    metric shown per panel.
    """
    import seaborn as sns

    plt = _pyplot()
    ys, xs = list(axes_values[0]), list(axes_values[1])
    fig, axes = plt.subplots(
        1, len(panels), figsize=(len(panels) * (0.9 * len(xs) + 2.8), 0.7 * len(ys) + 1.6), squeeze=False
    )
    for ax, (title, cells) in zip(axes[0], panels.items()):
        grid = np.full((len(ys), len(xs)), np.nan)
        for (y, x), values in cells.items():
            if values:
                grid[ys.index(y), xs.index(x)] = 100 * float(np.mean(values))
        annot = np.where(np.isnan(grid), MISSING, np.vectorize(lambda v: f"{v:.1f}")(grid))
        sns.heatmap(
            grid,
            ax=ax,
            annot=annot,
            fmt="",
            cmap="viridis",
            xticklabels=[str(x) for x in xs],
            yticklabels=[str(y) for y in ys],
            cbar_kws={"label": metric_label.get(title, "") + " (×100)"},
        )
        colorbar = ax.collections[0].colorbar
        if colorbar is not None:
            colorbar.formatter.set_useOffset(False)
            colorbar.update_ticks()
        for (i, j), v in np.ndenumerate(grid):
            if math.isnan(v):
                ax.text(j + 0.5, i + 0.5, MISSING, ha="center", va="center", color="grey")
        ax.set_xlabel(_axis_name(keys[1]))
        ax.set_ylabel(_axis_name(keys[0]))
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem, dpi=120)


def bf1_curves(stem: Path, curves: dict[str, dict[str, list[np.ndarray]]], tolerances: Sequence[int]) -> list[Path]:
    """``curves`` = {dataset: {method: [per-seed array of BF1 at each tolerance]}}."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for ax, (dataset, methods) in zip(axes[0], curves.items()):
        for method, seeds in methods.items():
            data = 100 * np.stack(seeds)
            mean = data.mean(axis=0)
            se = data.std(axis=0, ddof=1) / math.sqrt(len(seeds)) if len(seeds) > 1 else np.zeros_like(mean)
            ax.errorbar(list(tolerances), mean, yerr=se, marker="o", capsize=3, label=f"{method} (n={len(seeds)})")
        ax.set_xticks(list(tolerances))
        ax.set_xlabel("tolerance (px)")
        ax.set_ylabel("boundary F1 (×100)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, stem, dpi=120)


def relation_map_figure(stem: Path, title: str, epochs: dict[int, dict[str, np.ndarray]], image: int = 0) -> list[Path]:
    """``epochs`` = {epoch: {"teacher": (B, h, w), "student": (B, h, w)}}: maps of probe ``image`` and
    the histograms of all probe maps, one column per epoch."""
    plt = _pyplot()
    order = sorted(epochs)
    fig, axes = plt.subplots(3, len(order), figsize=(2.6 * len(order), 7.2), squeeze=False)
    for j, epoch in enumerate(order):
        maps = epochs[epoch]
        for i, who in enumerate(("teacher", "student")):
            ax = axes[i][j]
            ax.imshow(maps[who][image], cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(who)
        ax = axes[2][j]
        for who, color in (("teacher", "tab:blue"), ("student", "tab:orange")):
            ax.hist(maps[who].ravel(), bins=40, alpha=0.55, color=color, label=who, density=True)
        ax.set_xlabel("relation value")
        if j == 0:
            ax.legend(fontsize=7)
        axes[0][j].set_title(f"epoch {epoch}")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem, dpi=120)
