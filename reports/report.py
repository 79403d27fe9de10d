"""``run_benchmark.py report``: the sweep's table (Markdown, LaTeX, CSV) and figures.

Writes atomically into ``<runs_dir>/_reports/`` (or ``report.out_dir``; ``-`` = print only): ``<sweep>.md``,
``<sweep>.tex`` (booktabs), ``<sweep>.csv`` (one line per row × dataset × metric, values as fractions, with
the paper's value, the difference and the Welch p-value), the figures that apply (:mod:`reports.figures`, one
file each, the qualitative figure among them) as ``<sweep>_<figure>.png`` and ``.pdf``, the per-image
distributions and win counts (:mod:`reports.distributions`), and the page that shows all of
it with the run status and provenance, ``<sweep>.html`` (:mod:`reports.html`). Nothing is written into
the runs themselves. Returns the Markdown (printed by the CLI).
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Optional

from bench.config import BenchConfig, RunConfig, row_label
from bench.config.protocols import get_protocol
from bench.contracts.dataset import dataset_info
from bench.eval.metrics import BASE_DEFINITION
from bench.eval.selection import BEST_OF_LAST_TEXT, selection_text
from bench.fileio import atomic_write
from bench.runs.provenance import mixed_provenance
from bench.runs.results import RunDir
from bench.runs.sweep import sweep_runs

from . import render
from .aggregate import load_record_map, long_frame, seed_values
from .distributions import write_distributions
from .figures import write_figures
from .html import run_statuses, write_page
from .table import build_table, long_table

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
    records = list(by_name.values())
    columns = []
    for dataset in cfg.datasets:
        metrics = next((tuple(r["report_metrics"]) for r in records if r["dataset"] == dataset), None)
        info = dataset_info(dataset)
        for metric in metrics or get_protocol(cfg.protocol).metrics_for(info.family, tuple(info.metrics)):
            columns.append((dataset, metric))
    labels = list(dict.fromkeys(row_label(r) for r in runs))
    protocol = get_protocol(cfg.protocol)
    definition = cfg.report.metrics or protocol.metrics
    frame = long_frame(records, cfg.report.metrics, cfg.report.checkpoint)
    with_paper = protocol.paper_tables and definition == protocol.metrics
    table = build_table(
        cfg.sweep, labels, columns, seed_values(frame), with_paper=with_paper, reference=cfg.report.reference
    )
    seeds = sorted({r["seed"] for r in records})
    table.n_seeds = len(seeds)  # cells over fewer seeds are marked (n=K)
    view = protocol_line(cfg, definition, with_paper)
    title = f"### {cfg.sweep}: mean ± SE over seeds {seeds} (×100), {len(records)}/{len(runs)} runs complete\n{view}"
    markdown = render.to_markdown(table, title)
    notes = problems + mixed_provenance(records)
    if notes:  # mixed commits / packages / weights, random-init runs
        markdown += "\n\n" + "\n".join(f"**warning:** {n}" for n in notes)
        for note in notes:
            log.warning("%s: %s", cfg.sweep, note)
    caption = (
        f"{cfg.sweep}: mean ± SE over seeds {seeds} (×100); bold = best, † = Welch p < 0.05 vs the reference row. "
        + view
    )
    out = report_dir(cfg, out_dir)
    if out is None:
        return markdown
    try:
        atomic_write(out / f"{cfg.sweep}.md", markdown.encode())
        atomic_write(out / f"{cfg.sweep}.tex", render.to_latex(table, caption).encode())
        atomic_write(out / f"{cfg.sweep}.csv", long_table(table).to_csv(index=False).encode())
        named = list(zip(runs, names))
        figures = write_figures(cfg, named, by_name, out)
        per_image, wins = write_distributions(
            cfg.runs_dir, cfg.sweep, named, by_name, table.references, labels, definition, out
        )
        figures += per_image
        statuses = run_statuses(cfg.runs_dir, runs)
        write_page(
            out / f"{cfg.sweep}.html", cfg.sweep, title.splitlines()[0].lstrip("# "), view, table,
            render.notes(table), notes, figures, wins, statuses, records,
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
    log.info("report written to %s/%s.{md,tex,csv,html} and %d figure files", out, cfg.sweep, len(figures))
    return markdown


def report_dir(cfg: BenchConfig, out_dir: str | Path | None = None) -> Optional[Path]:
    """Where the report files go: ``out_dir``, else ``report.out_dir``, else ``<runs_dir>/_reports``;
    None for ``-`` (print only)."""
    chosen = out_dir if out_dir is not None else cfg.report.out_dir
    if str(chosen) == "-":
        return None
    return Path(chosen) if chosen else Path(cfg.runs_dir) / "_reports"


def protocol_line(cfg: BenchConfig, definition: str, with_paper: bool) -> str:
    """Which protocol made the runs, which metric definitions and checkpoint the table shows."""
    protocol = get_protocol(cfg.protocol)
    if cfg.report.checkpoint == "best_of_last":
        checkpoint = BEST_OF_LAST_TEXT.format(k=cfg.eval.select_epochs)
    else:
        checkpoint = selection_text(cfg.eval.select, cfg.eval.select_epochs)
    metrics = f"{definition} metric definitions"
    if definition != BASE_DEFINITION:
        metrics += f" (metrics they do not define: {BASE_DEFINITION})"
    paper_note = "paper / Δ: the published values" if with_paper else "no paper / Δ columns (other definitions)"
    if not protocol.paper_tables:
        paper_note = "no paper / Δ columns (not the paper's protocol)"
    return f"Protocol {protocol.name}: {protocol.summary}; {metrics}; checkpoint: {checkpoint}; {paper_note}."
