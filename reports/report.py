"""``run_benchmark.py report``: the sweep's table (Markdown, LaTeX, CSV) and figures.

Writes atomically into ``<runs_dir>/_reports/`` (or ``report.out_dir``; ``-`` = print only): ``<sweep>.md``,
``<sweep>.tex`` (booktabs), ``<sweep>.csv`` (one line per row × dataset × metric, values as fractions, with
the paper's value, the difference and the Welch p-value; a semantic sweep adds, per dataset, the per-class IoU
table of :mod:`reports.classes` to all three), the figures that apply (:mod:`reports.figures`, one
file each, the qualitative figure among them) as ``<sweep>_<figure>.png`` and ``.pdf``, the per-image
distributions and win counts (:mod:`reports.distributions`), and the page that shows all of
it with the run status and provenance, ``<sweep>.html`` (:mod:`reports.html`). Nothing is written into
the runs themselves. Returns the Markdown (printed by the CLI).
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from bench.config import BenchConfig, RunConfig, row_label
from bench.config.protocols import get_protocol
from bench.contracts.dataset import dataset_info
from bench.eval.metrics import BASE_DEFINITION
from bench.eval.selection import BEST_OF_LAST_TEXT, selection_text
from bench.fileio import atomic_write
from bench.phases import CLOCK
from bench.runs.provenance import by_design_notes, mixed_provenance
from bench.runs.results import RunDir
from bench.runs.sweep import sweep_runs

from . import paper, render
from .aggregate import load_record_map, long_frame, seed_values, with_tested
from .classes import ClassTable, class_tables, dataset_classes
from .distributions import write_distributions
from .figures import write_figures
from .html import run_statuses, write_page
from .names import report_name, with_report_name
from .selections import checkpoint_words, definition_words
from .table import ReportTable, build_table, long_table

log = logging.getLogger(__name__)

# a folder we may read but not write: permissions (EACCES, EPERM: chattr +i) or a read-only file system
READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def build_report(cfg: BenchConfig, out_dir: str | Path | None = None, runs: Optional[list[RunConfig]] = None) -> str:
    """Aggregate the sweep's complete runs and write the table files and figures; return the Markdown.

    ``runs``: the sweep's runs when the command resolved them (:func:`bench.runs.sweep.resolve_sweep`), else
    resolved here. The sweep's ``after_runs`` steps are not called here: the launcher runs them
    (:func:`bench.runs.launcher.launch`), so a ``report`` only reads."""
    runs = sweep_runs(cfg, runs)
    names = [RunDir(cfg.runs_dir, r).name for r in runs]  # by recorded digests where an input file is absent
    problems: list[str] = []
    by_name = load_record_map(cfg.runs_dir, names, problems)
    own = list(by_name.values())
    records = with_tested(own)  # a run scored on further test sets fills their columns too
    columns = []
    for dataset in dict.fromkeys([*cfg.datasets, *(r["dataset"] for r in records)]):
        metrics = next((tuple(r["report_metrics"]) for r in records if r["dataset"] == dataset), None)
        info = dataset_info(dataset)
        for metric in metrics or get_protocol(cfg.protocol).metrics_for(info.family, tuple(info.metrics)):
            columns.append((dataset, metric))
    labels = list(dict.fromkeys(row_label(r) for r in runs))
    protocol = get_protocol(cfg.protocol)
    definition = cfg.report.metrics or protocol.metrics
    frame = long_frame(records, cfg.report.metrics, cfg.report.checkpoint)
    with_paper = paper.comparable(cfg.sweep, protocol.name, protocol.paper_tables) and definition == protocol.metrics
    samples = seed_values(frame)
    table = build_table(cfg.sweep, labels, columns, samples, with_paper=with_paper, reference=cfg.report.reference)
    seeds = sorted({r["seed"] for r in records})
    table.n_seeds = len(seeds)  # cells over fewer seeds are marked (n=K)
    per_class = class_tables(  # semantic datasets only: none for a binary sweep
        cfg.sweep, labels, dataset_classes(records, cfg.datasets), samples, len(seeds), with_paper, cfg.report.reference
    )
    named = list(zip(runs, names))
    name = report_name(cfg, runs)
    if name != cfg.sweep:
        log.info("%s: other runs than sweeps/%s.yaml's (overrides); the report is named %s", cfg.sweep, cfg.sweep, name)
    view = protocol_line(cfg, definition, with_paper, named, by_name)
    title = f"### {name}: mean ± SE over seeds {seeds} (×100), {len(by_name)}/{len(runs)} runs complete\n{view}"
    markdown = render.to_markdown(table, title)
    for ct in per_class:
        markdown += "\n" + render.to_markdown(ct.table, ct.title(seeds), legend=False)
    notes = problems + mixed_provenance(own)
    if notes:  # mixed commits / packages / weights, random-init runs
        markdown += "\n\n" + "\n".join(f"**warning:** {n}" for n in notes)
        for note in notes:
            log.warning("%s: %s", name, note)
    for note in by_design_notes(own):  # scratch rows: random weights on purpose, not a warning
        markdown += f"\n\n**note:** {note}"
    legend = "bold = best, † = Welch p < 0.05 vs the reference row"
    caption = f"{name}: mean ± SE over seeds {seeds} (×100); {legend}. {view}"
    out = report_dir(cfg, out_dir)
    if out is None:
        return markdown
    try:
        with CLOCK.phase("report_tables"):
            atomic_write(out / f"{name}.md", markdown.encode())
            atomic_write(out / f"{name}.tex", _latex(name, table, per_class, caption, seeds, view).encode())
            atomic_write(out / f"{name}.csv", _long(table, per_class).to_csv(index=False).encode())
        with CLOCK.phase("figures"):
            figures = write_figures(with_report_name(cfg, name), named, by_name, out)
            per_image, wins = write_distributions(
                cfg.runs_dir, name, named, by_name, table.references, labels, definition, out
            )
        figures += per_image
        with CLOCK.phase("report_tables"):
            statuses = run_statuses(cfg.runs_dir, runs)
            write_page(
                out / f"{name}.html", name, title.splitlines()[0].lstrip("# "), view, table,
                render.notes(table), notes, figures, wins, statuses, own,
                [(ct.title(seeds).lstrip("# "), ct.table) for ct in per_class],
            )  # fmt: skip
    except OSError as err:  # a colleague's read-only runs (permissions, a read-only mount): still printed
        if err.errno not in READ_ONLY_ERRNOS:
            raise
        log.warning(
            "cannot write the report into %s (%s); printed only; report.out_dir=DIR writes it elsewhere",
            out,
            err.strerror,
        )
        return markdown
    log.info("report written to %s/%s.{md,tex,csv,html} and %d figure files", out, name, len(figures))
    return markdown


def _latex(
    sweep: str, table: ReportTable, per_class: list[ClassTable], caption: str, seeds: list[int], view: str
) -> str:
    """The headline ``table`` environment, then one per per-class table."""
    text = render.to_latex(table, caption)
    for ct in per_class:
        head = f"{sweep}, {ct.dataset}: per-class IoU, mean ± SE over seeds {seeds} (×100); bold = best"
        text += "\n" + render.to_latex(ct.table, f"{head}, † = Welch p < 0.05 vs the reference row. {view}")
    return text


def _long(table: ReportTable, per_class: list[ClassTable]) -> pd.DataFrame:
    """The CSV's rows: the headline table's, then the per-class tables' (same columns)."""
    if not per_class:
        return long_table(table)
    return pd.concat([long_table(table)] + [long_table(ct.table) for ct in per_class], ignore_index=True)


def report_dir(cfg: BenchConfig, out_dir: str | Path | None = None) -> Optional[Path]:
    """Where the report files go: ``out_dir``, else ``report.out_dir``, else ``<runs_dir>/_reports``;
    None for ``-`` (print only)."""
    chosen = out_dir if out_dir is not None else cfg.report.out_dir
    if str(chosen) == "-":
        return None
    return Path(chosen) if chosen else Path(cfg.runs_dir) / "_reports"


def protocol_line(
    cfg: BenchConfig,
    definition: str,
    with_paper: bool,
    named: Sequence[tuple[RunConfig, str]] = (),
    records: Optional[dict[str, dict[str, Any]]] = None,
) -> str:
    """Which protocol made the runs, which metric definitions and checkpoint the table shows.

    ``named`` (runs with their directory names) and ``records`` (the complete ones' by name): the runs whose
    records say they used another checkpoint rule or definitions are named (:mod:`reports.selections`)."""
    protocol = get_protocol(cfg.protocol)
    records = records or {}
    if cfg.report.checkpoint == "best_of_last":
        checkpoint = BEST_OF_LAST_TEXT.format(k=cfg.eval.select_epochs)
    else:
        checkpoint = checkpoint_words(selection_text(cfg.eval.select, cfg.eval.select_epochs), named, records)
    metrics = f"{definition} metric definitions"
    if definition != BASE_DEFINITION:
        metrics += f" (metrics they do not define: {BASE_DEFINITION})"
    if not cfg.report.metrics:  # each run's own definitions
        metrics += definition_words(definition, named, records)
    paper_note = "paper / Δ: the published values" if with_paper else "no paper / Δ columns (other definitions)"
    if not paper.comparable(cfg.sweep, protocol.name, protocol.paper_tables):
        paper_note = "no paper / Δ columns (not the paper's protocol)"
    return f"Protocol {protocol.name}: {protocol.summary}; {metrics}; checkpoint: {checkpoint}; {paper_note}."
