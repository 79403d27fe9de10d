"""The report table of a sweep: rows = methods, column groups = datasets × metrics (the paper's layout).

Each cell holds our mean ± SE over seeds, whether it is the column's best (compared at the displayed
precision, so equal-looking values are both bold), the Welch p-value against the reference row, and the
paper's published value with the difference (ours − paper, in points) when the sweep reproduces a paper
table (:mod:`reports.paper`). Paper rows that the sweep does not run are appended with our cells missing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import pandas as pd

from . import paper
from .labels import higher_better
from .stats import welch_p

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Column:
    dataset: str
    metric: str
    paper_dataset: Optional[str] = None  # the paper dataset it is (or stands in for)
    standin: bool = False  # True: a synthetic stand-in; a paper comparison is only indicative

    @property
    def higher_better(self) -> bool:
        return higher_better(self.metric)


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)  # one per seed, in [0, 1]
    best: bool = False
    p: Optional[float] = None  # Welch p-value vs the row's reference
    paper: Optional[paper.PaperValue] = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n if self.values else math.nan

    @property
    def se(self) -> float:
        if self.n < 2:
            return math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1) / self.n)

    @property
    def diff(self) -> Optional[float]:
        """ours − paper, in percentage points (None without both)."""
        if self.paper is None or not self.values:
            return None
        return 100 * self.mean - self.paper.mean


@dataclass
class ReportTable:
    sweep: str
    table: Optional[str]  # paper table id
    rows: list[str]  # row labels, sweep order, then paper-only rows
    columns: list[Column]
    cells: dict[tuple[str, int], Cell]
    references: dict[str, Optional[str]]  # row -> the row it is tested against
    paper_rows: dict[str, str]  # row -> the paper's row name
    paper_only: list[str]  # rows the sweep does not run (paper values only)
    n_seeds: int = 0  # seeds the title names; a cell averaged over fewer is marked (0 = no marking)

    def cell(self, row: str, col: int) -> Cell:
        return self.cells[(row, col)]

    def fewer_seeds(self, cell: Cell) -> bool:
        """Whether ``cell`` is averaged over fewer seeds than the table's title says."""
        return 0 < cell.n < self.n_seeds

    @property
    def standins(self) -> list[tuple[str, str]]:
        return sorted({(c.dataset, c.paper_dataset) for c in self.columns if c.standin and c.paper_dataset})


def build_table(
    sweep: str,
    labels: Sequence[str],
    columns: Sequence[tuple[str, str]],
    samples: dict[tuple[str, str, str], list[float]],
    with_paper: bool = True,
    reference: Union[str, dict[str, str], None] = None,
) -> ReportTable:
    """Assemble the table from per-seed samples ``(row, dataset, metric) -> values``.

    ``reference`` (the sweep's ``report.reference``): the row label every row is t-tested against, or
    ``{row label: its reference}``; None = ``zero_shot``.

    ``with_paper=False`` leaves the paper's values out (the runs' protocol or metric definitions are not
    the paper's, so "paper / Δ" would compare different definitions).
    """
    table_id = paper.sweep_table(sweep) if with_paper else None
    cols = [Column(d, m, *paper.paper_dataset(d)) for d, m in columns]
    published = paper.lookup(table_id) if table_id else {}
    rows = list(labels)
    canon = {paper.canonical_label(r): r for r in rows}
    paper_rows: dict[str, str] = {}
    paper_only: list[str] = []
    for (label, pds, metric), value in published.items():
        if not any(c.paper_dataset == pds and c.metric == metric for c in cols):
            continue
        row = canon.get(label)
        if row is None:
            row = label
            canon[label] = row
            rows.append(row)
            paper_only.append(row)
        paper_rows.setdefault(row, value.row)
    cells = {}
    for row in rows:
        for j, col in enumerate(cols):
            cell = Cell(values=list(samples.get((row, col.dataset, col.metric), [])))
            if col.paper_dataset:
                cell.paper = published.get((paper.canonical_label(row), col.paper_dataset, col.metric))
            cells[(row, j)] = cell
    references = _references(reference, rows, canon)
    for row, ref in references.items():
        if ref is None:
            continue
        for j in range(len(cols)):
            cells[(row, j)].p = welch_p(cells[(row, j)].values, cells[(ref, j)].values)
    for j, col in enumerate(cols):
        _mark_best([cells[(r, j)] for r in rows], col.higher_better)
    return ReportTable(sweep, table_id, rows, cols, cells, references, paper_rows, paper_only)


DEFAULT_REFERENCE = "zero_shot"


def _references(
    reference: Union[str, dict[str, str], None], rows: list[str], canon: dict[str, str]
) -> dict[str, Optional[str]]:
    """Each row's reference row among ``rows`` (None: no test for that row)."""
    if reference is None:
        reference = DEFAULT_REFERENCE
    out: dict[str, Optional[str]] = {}
    missing = set()
    for row in rows:
        ref = reference.get(paper.canonical_label(row)) if isinstance(reference, dict) else reference
        ref_row = canon.get(paper.canonical_label(ref)) if ref else None
        if ref and ref_row is None:
            missing.add(ref)
        out[row] = ref_row if ref_row is not None and ref_row != row else None
    for ref in sorted(missing - {DEFAULT_REFERENCE}):  # zero_shot absent (e.g. a distiller table) is normal
        log.warning("report.reference=%r is not a row of this table: no t-test against it", ref)
    return out


def _mark_best(cells: list[Cell], higher_better: bool) -> None:
    shown = [round(100 * c.mean, 1) for c in cells if c.values]
    if not shown:
        return
    best = max(shown) if higher_better else min(shown)
    for c in cells:
        c.best = bool(c.values) and round(100 * c.mean, 1) == best


def long_table(t: ReportTable) -> pd.DataFrame:
    """One row per (row, dataset, metric): ours (fractions in [0, 1]), the paper's (also as fractions),
    the difference, the t-test; the CSV output."""
    recs = []
    for row in t.rows:
        for j, col in enumerate(t.columns):
            c = t.cell(row, j)
            recs.append(
                {
                    "method": row,
                    "dataset": col.dataset,
                    "metric": col.metric,
                    "mean": c.mean if c.values else None,
                    "se": c.se if c.n > 1 else None,
                    "n": c.n,
                    "best": c.best,
                    "reference": t.references.get(row),
                    "p_welch": c.p,
                    "paper_table": t.table if c.paper else None,
                    "paper_row": c.paper.row if c.paper else None,
                    "paper_dataset": col.paper_dataset,
                    "standin": col.standin,
                    "paper_mean": c.paper.mean / 100 if c.paper else None,
                    "paper_se": c.paper.se / 100 if c.paper and c.paper.se is not None else None,
                    "diff": c.diff / 100 if c.diff is not None else None,
                }
            )
    return pd.DataFrame(recs)
