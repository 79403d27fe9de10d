"""``<sweep>.html``: one self-contained page per sweep (no server, no CDN, no script).

It shows, in this order: the table under the sweep's protocol (pandas Styler; mean ± SE ×100, best in
bold, † = Welch p < 0.05 against the reference row, missing cells as "–", and the paper's value with
Δ = ours − paper where the sweep reproduces a paper table), the legend and provenance warnings, a
semantic sweep's per-class IoU tables (:mod:`reports.classes`), the
paired per-image win / loss counts, every figure of the sweep (PNG files beside the page, each linked to
its PDF), the status of every run (done / running / failed / interrupted / missing, linked to its
``run.log``), and the reproducibility record (commit or source digest, packages, weights) of the complete runs it shows.
Links are relative to the page, so the report folder and the runs folder can move together.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import jinja2
import pandas as pd

from bench.config import RunConfig, row_label
from bench.fileio import atomic_write
from bench.runs.provenance import PACKAGES, source_label
from bench.runs.results import FAILED_FILE, RunDir

from .aggregate import MISSING, format_cell
from .render import _column_head, _diff_text, _metric_label, _row_name
from .stats import MARK, significant
from .table import ReportTable

log = logging.getLogger(__name__)

STATES = ("done", "running", "failed", "corrupt", "interrupted", "missing")  # RunDir.state


@dataclass
class RunStatus:
    """One run of the sweep as the page lists it."""

    label: str
    dataset: str
    seed: int
    name: str
    state: str
    log: Optional[Path]  # run.log if it exists
    error: str = ""


def run_statuses(runs_dir: str | Path, runs: Sequence[RunConfig]) -> list[RunStatus]:
    out = []
    for run in runs:
        rd = RunDir(runs_dir, run)
        state = rd.state()
        error = ""
        if state == "failed":
            error = json.loads((rd.path / FAILED_FILE).read_text()).get("error", "")
        log_file = rd.log_file if rd.log_file.is_file() else None
        out.append(RunStatus(row_label(run), run.dataset, run.seed, rd.name, state, log_file, error))
    return out


def results_frame(t: ReportTable) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table as text cells (columns: dataset × metric × ours / paper / Δ) and their CSS (bold best,
    grey missing). Row and column order are the Markdown table's."""
    with_paper = any(t.cell(r, j).paper is not None for r in t.rows for j in range(len(t.columns)))
    cols, styles, data = [], [], []
    for j, col in enumerate(t.columns):
        head = _column_head(t, j)
        dataset, _, metric = head.rpartition(" ")
        cols += (
            [(dataset, metric, "ours"), (dataset, metric, "paper"), (dataset, metric, "Δ")]
            if with_paper
            else [(dataset, metric)]
        )
    for row in t.rows:
        values, css = [], []
        for j in range(len(t.columns)):
            c = t.cell(row, j)
            ours = format_cell(c.mean, c.se) + (MARK if significant(c.p) else "") if c.values else MISSING
            values.append(ours)
            css.append("font-weight: bold" if c.best else ("color: #999" if not c.values else ""))
            if with_paper:
                values += [f"{c.paper.mean:.1f}" if c.paper else MISSING, _diff_text(c.diff) or MISSING]
                css += ["color: #555", "color: #555"]
        data.append(values)
        styles.append(css)
    index = pd.Index([_row_name(t, r) for r in t.rows], name="method")
    columns = pd.MultiIndex.from_tuples(cols, names=["dataset", "metric", ""][: len(cols[0])] if cols else None)
    return pd.DataFrame(data, index=index, columns=columns), pd.DataFrame(styles, index=index, columns=columns)


def table_html(t: ReportTable, uuid: str) -> str:
    frame, css = results_frame(t)
    styler = frame.style.apply(lambda _: css, axis=None).set_uuid(uuid).set_table_attributes('class="results"')
    styler = styler.hide(axis="index", names=True)
    return styler.to_html()


def _weights(w: Optional[dict[str, Any]]) -> str:
    """``backbone: sha256 prefix`` (or weights id, or "random init") of a weights record."""
    if not w:
        return "–"
    if w.get("random_by_method"):
        return f"{w['backbone']}: trained from scratch (random init by design)"
    ident = "random init" if w.get("random_init") else (w.get("sha256") or w.get("weights_id") or "?")
    return f"{w['backbone']}: {str(ident)[:16]}"


def _source(s: Any) -> str:
    """The source digest's prefix (runs from a clone and an archive of one commit share it), "–" without one."""
    return str(s["digest"])[:12] if isinstance(s, dict) and s.get("digest") else "–"


def _torch_build(b: Any) -> str:
    if not isinstance(b, dict):
        return "–"
    return f"{b.get('version')}, CUDA {b.get('cuda') or '–'}, cuDNN {b.get('cudnn') or '–'}"


def _driver(gpu: Any) -> str:
    return f", driver {gpu.get('driver') or '?'}" if isinstance(gpu, dict) else ""


def _provenance_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Distinct reproducibility records of ``records`` with the runs that share each."""
    groups: dict[str, dict[str, Any]] = {}
    for r in records:
        p = r.get("provenance")
        if not isinstance(p, dict):
            key, row = "none", {"commit": "no record (older run)"}
        else:
            row = {
                "commit": source_label(p) + (" (dirty)" if p.get("dirty") else ""),
                "source": _source(p.get("source")),
                **{k: (p.get("packages") or {}).get(k) or "–" for k in PACKAGES},
                "torch build": _torch_build(p.get("torch")),
                "python": p.get("python", "–"),
                "device": p.get("device", "–") + _driver(p.get("gpu")),
                "student weights": _weights(p.get("student_weights")),
                "teacher weights": _weights(p.get("teacher_weights")),
            }
            key = json.dumps(row, sort_keys=True)
        group = groups.setdefault(key, {**row, "runs": []})
        group["runs"].append(r["run"])
    return list(groups.values())


def _relative(path: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), page_dir.resolve())).as_posix()


TEMPLATE = jinja2.Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ sweep }}: samfit-bench report</title>
<style>
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: center; }
th { background: #f2f4f7; } td.left, th.left { text-align: left; }
.warning { background: #fff3cd; border: 1px solid #e0c060; padding: 0.4em 0.8em; margin: 0.3em 0; }
.state-done { color: #11772d; } .state-failed { color: #b00020; font-weight: bold; }
.state-missing, .state-interrupted, .state-running { color: #a06000; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
.small { font-size: 12px; color: #555; }
</style>
</head>
<body>
<h1>{{ sweep }}</h1>
<p>{{ headline }}</p>
<p class="small">{{ view }}</p>
{% for w in warnings %}<div class="warning">warning: {{ w }}</div>
{% endfor %}
<h2 id="table">Table</h2>
{{ table | safe }}
<ul class="small">{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>{% for c in class_tables %}
<h2 id="classes-{{ loop.index }}">{{ c.title }}</h2>
{{ c.html | safe }}{% endfor %}
{% if wins %}
<h2 id="wins">Per-image wins against the reference row</h2>
<p class="small">Headline metric of each dataset, each test image paired with the reference row's same image and
seed; a win is better in the metric's direction.</p>
<table class="wins">
<tr><th class="left">method</th><th>dataset</th><th>metric</th><th>reference</th><th>wins</th><th>losses</th>
<th>ties</th><th>pairs</th></tr>
{% for w in wins %}<tr><td class="left">{{ w.method }}</td><td>{{ w.dataset }}</td><td>{{ w.metric }}</td>
<td>{{ w.reference }}</td><td>{{ w.wins }}</td><td>{{ w.losses }}</td><td>{{ w.ties }}</td><td>{{ w.n }}</td></tr>
{% endfor %}</table>
{% endif %}
<h2 id="figures">Figures</h2>
{% for f in figures %}<figure><img src="{{ f.png }}" alt="{{ f.name }}">
<figcaption class="small">{{ f.name }}{% if f.pdf %} (<a href="{{ f.pdf }}">PDF</a>){% endif %}</figcaption></figure>
{% else %}<p>No figure applies to this sweep yet.</p>
{% endfor %}
<h2 id="status">Run status</h2>
<p>{{ counts }}</p>
<table class="status">
<tr><th>state</th><th class="left">method</th><th>dataset</th><th>seed</th><th class="left">run</th><th>log</th></tr>
{% for s in statuses %}<tr><td class="state-{{ s.state }}">{{ s.state }}</td><td class="left">{{ s.label }}</td>
<td>{{ s.dataset }}</td><td>{{ s.seed }}</td><td class="left">{{ s.name }}{% if s.error %}<br><span class="small">
{{ s.error }}</span>{% endif %}</td><td>{% if s.log %}<a href="{{ s.log }}">run.log</a>{% else %}–{% endif %}</td></tr>
{% endfor %}</table>
<h2 id="provenance">Reproducibility record</h2>
<p class="small">The complete runs shown above, grouped by their record (metrics.json → provenance).</p>
<table class="provenance">
<tr>{% for k in prov_keys %}<th>{{ k }}</th>{% endfor %}<th>runs</th></tr>
{% for p in provenance %}<tr>{% for k in prov_keys %}<td>{{ p.get(k, "–") }}</td>{% endfor %}
<td class="left small">{{ p.runs | length }}: {{ p.runs | join(", ") }}</td></tr>
{% endfor %}</table>
<p class="small">Written by samfit-bench <code>report</code> at {{ written }}.</p>
</body>
</html>
""",
    autoescape=True,
)


def write_page(
    path: Path,
    sweep: str,
    headline: str,
    view: str,
    table: ReportTable,
    notes: Sequence[str],
    warnings: Sequence[str],
    figures: Sequence[Path],
    wins: pd.DataFrame,
    statuses: Sequence[RunStatus],
    records: Sequence[dict[str, Any]],
    class_tables: Sequence[tuple[str, ReportTable]] = (),
) -> Path:
    """Render the page to ``path`` (atomically). ``figures`` are files in ``path``'s folder (PNG shown,
    PDF linked); ``statuses`` from :func:`run_statuses`; ``records`` the complete runs' metrics records;
    ``class_tables`` the per-class tables of a semantic sweep (title, table), shown under the legend."""
    page_dir = path.parent
    pngs = [f for f in figures if f.suffix == ".png"]
    shown = [
        {
            "png": _relative(f, page_dir),
            "pdf": _relative(f.with_suffix(".pdf"), page_dir) if f.with_suffix(".pdf").is_file() else None,
            "name": f.stem,
        }
        for f in pngs
    ]
    counts = {s: sum(st.state == s for st in statuses) for s in STATES}
    status_rows = [
        {**vars(s), "log": _relative(s.log, page_dir) if s.log else None}
        for s in sorted(statuses, key=lambda s: (STATES.index(s.state), s.dataset, s.label, s.seed))
    ]
    provenance = _provenance_rows(records)
    prov_keys = ["commit", "source", *PACKAGES, "torch build", "python", "device", "student weights", "teacher weights"]
    html = TEMPLATE.render(
        sweep=sweep,
        headline=headline,
        view=view,
        warnings=list(warnings),
        table=table_html(table, uuid=sweep.replace(".", "_")),
        notes=list(notes),
        class_tables=[
            {"title": title, "html": table_html(t, uuid=f"{sweep.replace('.', '_')}_classes{i}")}
            for i, (title, t) in enumerate(class_tables)
        ],
        wins=[{**w, "metric": _metric_label(w["metric"])} for w in wins.to_dict("records")],
        figures=shown,
        counts=", ".join(f"{v} {k}" for k, v in counts.items()),
        statuses=status_rows,
        provenance=provenance,
        prov_keys=prov_keys,
        written=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    atomic_write(path, html.encode())
    log.info("page written to %s", path)
    return path
