"""``run_benchmark.py report``: the sweep's table as Markdown and CSV (and printed)."""

from __future__ import annotations

import logging
from pathlib import Path

from bench.config import BenchConfig, row_label, run_configs, run_name
from datasets._base import dataset_info

from .aggregate import load_records, long_frame, result_table, summarize, to_markdown

log = logging.getLogger(__name__)


def build_report(cfg: BenchConfig, out_dir: str | Path | None = None) -> str:
    """Aggregate the sweep's complete runs; write ``<out>/<sweep>.md`` and ``.csv``; return the Markdown."""
    runs = run_configs(cfg)
    records = load_records(cfg.runs_dir, [run_name(r) for r in runs])
    columns = []
    for dataset in cfg.datasets:
        metrics = next((tuple(r["report_metrics"]) for r in records if r["dataset"] == dataset), None)
        for metric in metrics or dataset_info(dataset).metrics:
            columns.append((dataset, metric))
    summary = summarize(long_frame(records))
    labels = list(dict.fromkeys(row_label(r) for r in runs))
    table = result_table(summary, labels, columns)
    seeds = sorted({r["seed"] for r in records})
    title = f"### {cfg.sweep}: mean ± SE over seeds {seeds} (×100), {len(records)}/{len(runs)} runs complete"
    markdown = f"{title}\n\n{to_markdown(table)}\n"
    out = Path(out_dir or Path(cfg.runs_dir) / "_reports")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{cfg.sweep}.md").write_text(markdown)
    summary.to_csv(out / f"{cfg.sweep}.csv", index=False)
    log.info("report written to %s/%s.{md,csv}", out, cfg.sweep)
    return markdown
