"""Per-image distributions of a sweep: does a method win everywhere, or on three images?

From each complete run's ``per_image.csv`` (the reported checkpoint), the dataset's headline metric (its
first table metric) under the report's metric definition (``<definition>.<key>`` columns, the clean key
where the definition does not define it):

* ``<sweep>_per_image.{png,pdf}``: one panel per dataset, a box plot per table row with every image of
  every seed as a point (seaborn), ×100;
* ``<sweep>_wins.csv``: the paired win / loss / tie count of each row against its reference row (the
  t-test's reference, :mod:`reports.paper`), pairing the same image under the same seed. "Win" means
  better in the metric's direction (lower BER / MAE wins).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from bench.config import RunConfig, row_label
from bench.eval.metrics import BASE_DEFINITION
from bench.fileio import atomic_write

from .figfiles import pyplot, save_figure
from .figures import headline_metric
from .labels import higher_better, metric_label

log = logging.getLogger(__name__)

Named = list[tuple[RunConfig, str]]
COLUMNS = ["method", "dataset", "seed", "name", "metric", "value"]
WIN_COLUMNS = ["method", "dataset", "metric", "reference", "wins", "losses", "ties", "n"]


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def per_image_frame(
    runs_dir: str | Path, runs: Named, records: dict[str, dict[str, Any]], definition: str
) -> pd.DataFrame:
    """One row per (complete run, test image): its headline metric value (fraction). Runs without a
    ``per_image.csv`` or without the metric's column are left out."""
    out = []
    for run, name in runs:
        record = records.get(name)
        path = Path(runs_dir) / name / "per_image.csv"
        if record is None or not path.is_file():
            continue
        metric = headline_metric(run.dataset, record)
        rows = _read_rows(path)
        if not rows:
            continue
        key = (
            f"{definition}.{metric}"
            if definition != BASE_DEFINITION and f"{definition}.{metric}" in rows[0]
            else metric
        )
        if key not in rows[0]:
            log.warning("%s: per_image.csv has no %s column", name, key)
            continue
        label = row_label(run)
        out += [
            {
                "method": label,
                "dataset": run.dataset,
                "seed": run.seed,
                "name": r["name"],
                "metric": metric,
                "value": float(r[key]),
            }
            for r in rows
            if r[key] not in ("", "nan")
        ]
    return pd.DataFrame(out, columns=COLUMNS)


def paired_counts(frame: pd.DataFrame, references: dict[str, Optional[str]], tol: float = 1e-12) -> pd.DataFrame:
    """Wins, losses and ties of each row against its reference, per dataset, over (seed, image) pairs."""
    out = []
    for (method, dataset), group in frame.groupby(["method", "dataset"], sort=False):
        ref = references.get(method)
        if ref is None:
            continue
        ref_rows = frame[(frame.method == ref) & (frame.dataset == dataset)]
        pairs = group.merge(ref_rows, on=["seed", "name"], suffixes=("", "_ref"))
        if pairs.empty:
            continue
        metric = group["metric"].iloc[0]
        sign = 1.0 if higher_better(metric) else -1.0
        delta = sign * (pairs["value"] - pairs["value_ref"])
        wins, losses = int((delta > tol).sum()), int((delta < -tol).sum())
        out.append([method, dataset, metric, ref, wins, losses, len(pairs) - wins - losses, len(pairs)])
    return pd.DataFrame(out, columns=WIN_COLUMNS)


def _tick(method: str, dataset: str, wins: pd.DataFrame) -> str:
    row = wins[(wins.method == method) & (wins.dataset == dataset)]
    if row.empty:
        return method
    r = row.iloc[0]
    return f"{method}\n{r.wins}/{r.losses}/{r.ties} vs {r.reference}"


def plot_distributions(stem: Path, frame: pd.DataFrame, wins: pd.DataFrame, order: Sequence[str]) -> list[Path]:
    """Box + strip plot per dataset panel (x = table row in ``order``, y = headline metric ×100)."""
    import seaborn as sns

    plt = pyplot()
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(max(3.6, 1.25 * len(order)) * len(datasets), 4.2), squeeze=False
    )
    for ax, dataset in zip(axes[0], datasets):
        data = frame[frame.dataset == dataset].assign(percent=lambda d: 100 * d["value"])
        methods = [m for m in order if m in set(data["method"])]
        sns.boxplot(data=data, x="method", y="percent", order=methods, ax=ax, color="#d9e6f2", fliersize=0)
        sns.stripplot(data=data, x="method", y="percent", order=methods, ax=ax, size=3, color="#1f4e79", alpha=0.7)
        metric = data["metric"].iloc[0]
        seeds = sorted(int(s) for s in data["seed"].unique())
        ax.set_title(f"{dataset}: {metric_label(metric)} per image", fontsize=9)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels([_tick(m, dataset, wins) for m in methods], fontsize=7, rotation=20, ha="right")
        ax.set_xlabel(f"seeds {seeds} pooled; W/L/T = paired wins / losses / ties", fontsize=7)
        ax.set_ylabel("×100")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, stem)


def write_distributions(
    runs_dir: str | Path,
    sweep: str,
    runs: Named,
    records: dict[str, dict[str, Any]],
    references: dict[str, Optional[str]],
    order: Sequence[str],
    definition: str,
    out: Path,
) -> tuple[list[Path], pd.DataFrame]:
    """The per-image figure and ``<sweep>_wins.csv``; returns the files written and the win counts."""
    frame = per_image_frame(runs_dir, runs, records, definition)
    wins = paired_counts(frame, references)
    if frame.empty:
        return [], wins
    csv_path = out / f"{sweep}_wins.csv"
    atomic_write(csv_path, wins.to_csv(index=False).encode())
    return plot_distributions(out / f"{sweep}_per_image", frame, wins, order) + [csv_path], wins
