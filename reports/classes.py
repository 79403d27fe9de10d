"""The per-class table of a semantic or instances sweep: per dataset, rows = methods, columns = the class IoUs.

A ``semantic`` or ``instances`` run (``"task"`` in its ``metrics.json``) names its classes (``"classes"``) and
records one ``iou_<class>`` per class beside its headline metrics (``acc`` / ``miou``; an instances run: the
mean IoU of that category's objects); the headline table shows the latter, this table the former, built like
the headline table (:func:`reports.table.build_table`: mean ± SE
over seeds, best in bold, the Welch mark, the paper's value and Δ where its table has the cell). Binary
runs have no per-class table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

from .table import ReportTable, build_table

CLASS_TASKS = ("semantic", "instances")  # runs that name their classes and record iou_<class>


@dataclass(frozen=True)
class ClassTable:
    """The per-class IoU table of one dataset."""

    dataset: str
    classes: tuple[str, ...]
    table: ReportTable

    def title(self, seeds: Sequence[int]) -> str:
        return f"#### {self.dataset}: per-class IoU, mean ± SE over seeds {list(seeds)} (×100)"


def dataset_classes(records: Sequence[dict[str, Any]], datasets: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``dataset -> class names`` of the datasets (in ``datasets`` order) that have a complete semantic or
    instances run; the first such run's ``classes`` decide."""
    out: dict[str, tuple[str, ...]] = {}
    for dataset in datasets:
        for r in records:
            if r["dataset"] == dataset and r.get("task") in CLASS_TASKS and r.get("classes"):
                out[dataset] = tuple(str(c) for c in r["classes"])
                break
    return out


def class_tables(
    sweep: str,
    labels: Sequence[str],
    classes: dict[str, tuple[str, ...]],
    samples: dict[tuple[str, str, str], list[float]],
    n_seeds: int,
    with_paper: bool = True,
    reference: Union[str, dict[str, str], None] = None,
) -> list[ClassTable]:
    """One :class:`ClassTable` per dataset of ``classes`` (columns ``iou_<class>`` in class order)."""
    out = []
    for dataset, names in classes.items():
        columns = [(dataset, f"iou_{name}") for name in names]
        table = build_table(sweep, labels, columns, samples, with_paper=with_paper, reference=reference)
        table.n_seeds = n_seeds
        out.append(ClassTable(dataset, names, table))
    return out
