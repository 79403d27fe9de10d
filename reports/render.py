"""Markdown and LaTeX renderings of a :class:`reports.table.ReportTable`.

Both show our mean ± SE (×100) per cell, the column's best in bold, :data:`reports.stats.MARK` when the
row differs from its reference row (Welch, p < 0.05), missing cells as :data:`MISSING`, and the paper's
value with ``Δ`` = ours − paper beside ours (Markdown: in the cell; LaTeX: in a small "paper (Δ)" line
under the row, so the column layout stays the paper's). The LaTeX needs ``\\usepackage{booktabs}``.
"""

from __future__ import annotations

import math
from typing import Optional

from bench.eval.metrics import METRICS

from . import paper
from .aggregate import MISSING, format_cell
from .labels import metric_label
from .stats import MARK, significant
from .table import Cell, ReportTable

LATEX_MISSING = "--"
LATEX_METRICS = {
    "sm": r"$S_\alpha$",
    "em_adp": r"$E_\phi^{\mathrm{adp}}$",
    "em_mean": r"$E_\phi^{\mathrm{mean}}$",
    "em_max": r"$E_\phi^{\mathrm{max}}$",
    "wfm": r"$F_\beta^{\mathrm{w}}$",
    "mae": "MAE",
    "iou": "IoU",
    "dice": "Dice",
    "ber": "BER",
}
_LATEX_CHARS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "α": r"$\alpha$",
    "λ": r"$\lambda$",
    "φ": r"$\phi$",
    "β": r"$\beta$",
    "Δ": r"$\Delta$",
    "±": r"$\pm$",
    "≈": r"$\approx$",
    "–": "--",
    "−": "$-$",
    "—": "---",
    "†": r"$^\dagger$",
    "≥": r"$\geq$",
    "×": r"$\times$",
    "·": r"$\cdot$",
    "<": "$<$",
    ">": "$>$",
    "“": "``",
    "”": "''",
    "✓": r"$\checkmark$",
}


def escape_latex(text: str) -> str:
    """Escape LaTeX specials and map the few non-ASCII symbols used in labels to commands."""
    return "".join(_LATEX_CHARS.get(ch, ch) for ch in text)


def _metric_label(metric: str) -> str:
    return metric_label(metric)


def latex_metric(metric: str) -> str:
    """The LaTeX column head of a metric: :data:`LATEX_METRICS`, else a binary key as written (as it always
    was), else its label (``miou`` -> ``mIoU``, ``iou_shelf`` -> ``IoU(shelf)``)."""
    if metric in LATEX_METRICS:
        return LATEX_METRICS[metric]
    return escape_latex(metric if metric in METRICS else metric_label(metric))


def _diff_text(diff: Optional[float]) -> str:
    if diff is None:
        return ""
    return f"{'+' if diff >= 0 else '−'}{abs(diff):.1f}"


def _paper_text(cell: Cell) -> str:
    if cell.paper is None:
        return ""
    text = f"paper {cell.paper.mean:.1f}"
    return text + (f", Δ {_diff_text(cell.diff)}" if cell.diff is not None else "")


def _ours_md(cell: Cell, n_seeds: int = 0) -> str:
    if not cell.values:
        return MISSING
    text = format_cell(cell.mean, cell.se)
    text = f"**{text}**" if cell.best else text
    return text + (MARK if significant(cell.p) else "") + (f" (n={cell.n})" if 0 < cell.n < n_seeds else "")


def seeds_note(t: ReportTable) -> Optional[str]:
    """The legend line for cells averaged over fewer seeds than the title says (None when there are none)."""
    if not any(t.fewer_seeds(c) for c in t.cells.values()):
        return None
    return f"(n=K): averaged over only K of the {t.n_seeds} seeds (the other runs are missing or failed)."


def _row_name(t: ReportTable, row: str) -> str:
    name = row + (" (not run)" if row in t.paper_only else "")
    return name + (f" = paper “{t.paper_rows[row]}”" if row in t.paper_rows and t.paper_rows[row] != row else "")


def _column_head(t: ReportTable, j: int) -> str:
    col = t.columns[j]
    ds = col.dataset
    if col.paper_dataset and col.paper_dataset != col.dataset:
        ds += f" (≈{col.paper_dataset}*)" if col.standin else f" ({col.paper_dataset})"
    return f"{ds} {_metric_label(col.metric)}"


def notes(t: ReportTable) -> list[str]:
    """The legend under the table."""
    out = [f"Bold: best per column. {MARK}: Welch t-test against the row's reference, p < 0.05 (≥ 2 seeds each)."]
    refs = sorted({r for r in t.references.values() if r})
    if refs:
        out.append("Reference rows: " + ", ".join(refs) + ".")
    if t.table:
        out.append(f"Paper: {paper.table_source(t.table)}; Δ = ours − paper (points).")
        if t.standins:
            pairs = ", ".join(f"{d} for {p}" for d, p in t.standins)
            out.append(
                f"*Synthetic stand-ins ({pairs}): the paper's numbers are on the real datasets, so Δ only "
                "locates the reproduction, it does not measure it."
            )
    fewer = seeds_note(t)
    if fewer:
        out.append(fewer)
    return out


def to_markdown(t: ReportTable, title: str, legend: bool = True) -> str:
    """The table under ``title``, then (``legend``) the legend of :func:`notes`."""
    heads = ["method"] + [_column_head(t, j) for j in range(len(t.columns))]
    lines = [title, "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in t.rows:
        cells = []
        for j in range(len(t.columns)):
            c = t.cell(row, j)
            paper_text = _paper_text(c)
            cells.append(_ours_md(c, t.n_seeds) + (f" ({paper_text})" if paper_text else ""))
        lines.append("| " + " | ".join([_row_name(t, row)] + cells) + " |")
    return "\n".join(lines + ([""] + notes(t) if legend else [])) + "\n"


def _ours_latex(cell: Cell, n_seeds: int = 0) -> str:
    if not cell.values:
        return LATEX_MISSING
    text = f"{100 * cell.mean:.1f}"
    if not math.isnan(cell.se):
        text += rf"~$\pm$~{100 * cell.se:.2f}"
    text = rf"\textbf{{{text}}}" if cell.best else text
    text += r"$^\dagger$" if significant(cell.p) else ""
    return text + (rf"$^{{n={cell.n}}}$" if 0 < cell.n < n_seeds else "")


def to_latex(t: ReportTable, caption: str) -> str:
    """A booktabs ``table`` environment: a dataset header row with ``\\cmidrule``s, a metric row, then
    one line per method (and a "paper (Δ)" line under rows that have published values)."""
    groups: list[tuple[str, int]] = []
    for col in t.columns:
        name = col.dataset + (f" ({col.paper_dataset}*)" if col.standin else "")
        if groups and groups[-1][0] == name:
            groups[-1] = (name, groups[-1][1] + 1)
        else:
            groups.append((name, 1))
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{escape_latex(caption)}}}",
        rf"\begin{{tabular}}{{l{'c' * len(t.columns)}}}",
        r"\toprule",
    ]
    head, rules, start = ["Method"], [], 2
    for name, width in groups:
        head.append(rf"\multicolumn{{{width}}}{{c}}{{{escape_latex(name)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    lines.append(" & ".join(head) + r" \\")
    lines.append(" ".join(rules))
    lines.append(" & ".join([""] + [latex_metric(c.metric) for c in t.columns]) + r" \\")
    lines.append(r"\midrule")
    for row in t.rows:
        name = escape_latex(row + (" (not run)" if row in t.paper_only else ""))
        cells = [t.cell(row, j) for j in range(len(t.columns))]
        lines.append(" & ".join([name] + [_ours_latex(c, t.n_seeds) for c in cells]) + r" \\")
        if any(c.paper is not None for c in cells):
            paper_cells = [
                (f"{c.paper.mean:.1f}" + (f" ({escape_latex(_diff_text(c.diff))})" if c.diff is not None else ""))
                if c.paper
                else LATEX_MISSING
                for c in cells
            ]
            lines.append(
                " & ".join(
                    [r"\quad{\footnotesize paper ($\Delta$)}"] + [rf"{{\footnotesize {p}}}" for p in paper_cells]
                )
                + r" \\"
            )
    lines += [r"\bottomrule", r"\end{tabular}"]
    fewer = seeds_note(t)
    if fewer:  # the footnote of the n=K marks
        lines.append(rf"\par\smallskip{{\footnotesize $^{{n=K}}$ {escape_latex(fewer.split(': ', 1)[1])}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
