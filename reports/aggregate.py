"""Aggregation of complete runs: mean ± standard error over seeds per (dataset, method).

Reads only ``metrics.json`` files (a run without one is not complete and is shown as missing).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import pandas as pd

from bench.eval.metrics import BASE_DEFINITION
from bench.runs.results import CorruptMetricsError, check_record

log = logging.getLogger(__name__)

MISSING = "–"  # a cell without a complete run (never dropped)


def load_record_map(
    runs_dir: str | Path, names: Iterable[str], problems: Optional[list[str]] = None
) -> dict[str, dict[str, Any]]:
    """``run name -> metrics record`` of the named runs that are complete; a damaged ``metrics.json`` is
    skipped with a warning naming it (appended to ``problems`` if given)."""
    records = {}
    for name in names:
        path = Path(runs_dir) / name / "metrics.json"
        if path.is_file():
            try:
                records[name] = check_record(path)
            except CorruptMetricsError as err:
                log.warning("skipped a damaged result: %s", err)
                if problems is not None:
                    problems.append(f"skipped a damaged result: {err}")
    return records


# what a record says of its own test set only: not carried into the records of its further test sets
_OWN_TEST_KEYS = ("metrics_best_of_last", "metrics_by_definition_best_of_last", "also_tested")


def with_tested(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` and, after each, one record per further test set it was scored on (``eval.also_test``, in
    ``metrics.json`` ``also_tested``): the run's record with that dataset's values, ``tested_by`` = the run's
    own dataset. A table's cell of that test set is then the same trained model as its host's cell."""
    out = []
    for record in records:
        out.append(record)
        for dataset, scored in (record.get("also_tested") or {}).items():
            derived = {k: v for k, v in record.items() if k not in _OWN_TEST_KEYS}
            out.append({**derived, **scored, "dataset": dataset, "tested_by": record["dataset"]})
    return out


def record_metrics(record: dict[str, Any], definition: Optional[str] = None, checkpoint: str = "reported") -> dict:
    """A run's values under a metric definition (None = its protocol's) and checkpoint view.

    ``checkpoint="best_of_last"`` reads the best of the last epochs on the test set, which only runs with
    ``eval.select=test_last`` (the InfoSAM protocol) keep; other runs give nothing (missing cells).
    """
    if checkpoint == "best_of_last":
        if "metrics_by_definition_best_of_last" not in record:
            return {}
        by_definition = record["metrics_by_definition_best_of_last"]
    else:
        by_definition = record.get("metrics_by_definition")
    if by_definition is None:  # a run from before metric definitions were recorded: clean only
        return dict(record["metrics"]) if definition in (None, BASE_DEFINITION) else {}
    chosen = definition or record.get("metric_definition", BASE_DEFINITION)
    return {**by_definition[BASE_DEFINITION], **by_definition.get(chosen, {})}


def long_frame(
    records: Sequence[dict[str, Any]], definition: Optional[str] = None, checkpoint: str = "reported"
) -> pd.DataFrame:
    """One row per (run, metric): columns method, dataset, seed, metric, value (see :func:`record_metrics`)."""
    rows = [
        {"method": r["method"], "dataset": r["dataset"], "seed": r["seed"], "metric": m, "value": v}
        for r in records
        for m, v in record_metrics(r, definition, checkpoint).items()
    ]
    return pd.DataFrame(rows, columns=["method", "dataset", "seed", "metric", "value"])


def format_cell(mean: float, se: float, scale: float = 100.0) -> str:
    """``mean ± se`` in percent (the paper's scale: mean 1 decimal, SE 2); one seed shows the mean alone."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    text = f"{mean * scale:.1f}"
    if se is not None and not math.isnan(se):
        text += f" ± {se * scale:.2f}"
    return text


def seed_values(df: pd.DataFrame) -> dict[tuple[str, str, str], list[float]]:
    """``(method, dataset, metric) -> [value per seed]`` (seed order), the samples of the t-tests."""
    out: dict[tuple[str, str, str], list[float]] = {}
    for key, group in df.sort_values("seed").groupby(["method", "dataset", "metric"], sort=False):
        out[key] = [float(v) for v in group["value"]]
    return out
