"""Aggregation of complete runs: mean ± standard error over seeds per (dataset, method).

Reads only ``metrics.json`` files (a run without one is not complete and is shown as missing).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from bench.metrics import METRICS

MISSING = "—"


def load_records(runs_dir: str | Path, names: Iterable[str]) -> list[dict[str, Any]]:
    """The metrics records of the named runs that are complete."""
    records = []
    for name in names:
        path = Path(runs_dir) / name / "metrics.json"
        if path.is_file():
            records.append(json.loads(path.read_text()))
    return records


def long_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per (run, metric): columns method, dataset, seed, metric, value."""
    rows = [
        {"method": r["method"], "dataset": r["dataset"], "seed": r["seed"], "metric": m, "value": v}
        for r in records
        for m, v in r["metrics"].items()
    ]
    return pd.DataFrame(rows, columns=["method", "dataset", "seed", "metric", "value"])


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """mean, standard error (ddof=1; NaN for one seed) and n per (method, dataset, metric)."""
    grouped = df.groupby(["method", "dataset", "metric"], sort=False)["value"]
    out = grouped.agg(mean="mean", se="sem", n="count").reset_index()
    return out


def format_cell(mean: float, se: float, digits: int = 3, scale: float = 100.0) -> str:
    """``mean ± se`` in percent (the paper's scale); one seed shows the mean alone."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    text = f"{mean * scale:.{max(digits - 2, 1)}f}"
    if se is not None and not math.isnan(se):
        text += f" ± {se * scale:.{max(digits - 2, 1)}f}"
    return text


def result_table(
    summary: pd.DataFrame,
    methods: Sequence[str],
    columns: Sequence[tuple[str, str]],
) -> pd.DataFrame:
    """Rows = methods (sweep order), columns = (dataset, metric) pairs; missing cells marked."""
    index = {(r.method, r.dataset, r.metric): (r.mean, r.se) for r in summary.itertuples()}
    data = {}
    for dataset, metric in columns:
        label = METRICS[metric].label if metric in METRICS else metric
        data[(dataset, label)] = [
            format_cell(*index[(m, dataset, metric)]) if (m, dataset, metric) in index else MISSING for m in methods
        ]
    frame = pd.DataFrame(data, index=list(methods))
    frame.columns = pd.MultiIndex.from_tuples(list(data))
    return frame


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table with ``dataset / metric`` headers."""
    heads = ["method"] + [f"{d} {m}" for d, m in table.columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for method, row in table.iterrows():
        lines.append("| " + " | ".join([str(method)] + [str(v) for v in row.tolist()]) + " |")
    return "\n".join(lines)
