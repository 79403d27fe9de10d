"""Every table a sweep writes compiles with pdflatex + booktabs, and its first page is not blank.

Needs ``pdflatex`` (Debian ``texlive-latex-base``; booktabs from ``texlive-latex-recommended``) and
``pdftoppm`` / ``pdftotext`` (``poppler-utils``); skipped with the reason where they are absent."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .test_report import table1  # noqa: F401  (fixture: the table1 sweep from fake runs)

TOOLS = {t: shutil.which(t) for t in ("pdflatex", "pdftoppm", "pdftotext")}
needs_tex = pytest.mark.skipif(
    not all(TOOLS.values()),
    reason="needs "
    + ", ".join(t for t, p in TOOLS.items() if not p)
    + " (apt-get install texlive-latex-base texlive-latex-recommended poppler-utils)",
)

DOCUMENT = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\usepackage[margin=1.5cm,landscape]{geometry}
\begin{document}
\input{%s}
\end{document}
"""


def compile_table(tex: Path, work: Path) -> tuple[Path, str]:
    """Compile ``tex`` inside a minimal article; returns the PDF and the text pdftotext reads from it."""
    work.mkdir(parents=True, exist_ok=True)
    doc = work / f"{tex.stem}_doc.tex"
    doc.write_text(DOCUMENT % tex.resolve().as_posix())
    proc = subprocess.run(
        [TOOLS["pdflatex"], "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", doc.name],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (work / f"{doc.stem}.log").read_text(errors="replace")
    assert proc.returncode == 0, f"{tex.name} does not compile:\n{proc.stdout[-3000:]}"
    assert "Missing character" not in log and "Undefined control sequence" not in log
    pdf = work / f"{doc.stem}.pdf"
    text = subprocess.run([TOOLS["pdftotext"], "-layout", str(pdf), "-"], capture_output=True, text=True, check=True)
    return pdf, text.stdout


def first_page_ink(pdf: Path, work: Path) -> float:
    """Share of non-white pixels on page 1, rendered by pdftoppm at 60 dpi."""
    stem = work / f"{pdf.stem}_page"
    subprocess.run(
        [TOOLS["pdftoppm"], "-r", "60", "-f", "1", "-l", "1", "-png", "-singlefile", str(pdf), str(stem)], check=True
    )
    with Image.open(stem.with_suffix(".png")) as im:
        gray = np.asarray(im.convert("L"))
    return float((gray < 200).mean())


def assert_math_text_upright(tex: str) -> None:
    """Words inside sub/superscripts are \\mathrm (E_\\phi^{\\mathrm{adp}}, not E_\\phi^{adp})."""
    for math in re.findall(r"\$([^$]+)\$", tex):
        assert not re.search(r"[_^]\{?[A-Za-z]{2,}", re.sub(r"\\[A-Za-z]+", "", math)), math


@needs_tex
def test_every_table_of_the_smoke_sweep_compiles(smoke_report, tmp_path):
    tables = sorted(smoke_report.out.glob("*.tex"))
    assert [t.name for t in tables] == ["smoke.tex"]
    for tex in tables:
        source = tex.read_text()
        assert_math_text_upright(source)
        assert r"E_\phi^{\mathrm{adp}}" in source
        pdf, text = compile_table(tex, tmp_path / tex.stem)
        assert first_page_ink(pdf, tmp_path) > 0.002, f"{tex.name}: page 1 is blank"
        for row in ("zero_shot", "adapter"):
            assert row in text


@needs_tex
def test_paper_table_compiles_and_reads_like_a_paper_table(table1, tmp_path):  # noqa: F811
    _, _, out = table1
    tables = sorted(out.glob("*.tex"))
    assert tables
    for tex in tables:
        assert_math_text_upright(tex.read_text())
        pdf, text = compile_table(tex, tmp_path / tex.stem)
        assert first_page_ink(pdf, tmp_path) > 0.002
    # the body as typeset: our mean ± SE, the paper's line with Δ, a missing cell
    assert re.search(r"adapter\s+82\.0 ± 1\.15", text)
    assert re.search(r"paper \(.\)\s+93\.4 \(−11\.4\)\s+97\.1 \(−10\.1\)", text)
    assert re.search(r"decoder_only \(not run\)", text)
    assert "Table 1:" in text and "mean ± SE over seeds" in text


def test_math_check_catches_text_in_math():
    with pytest.raises(AssertionError):
        assert_math_text_upright(r"a & $E_\phi^{adp}$ \\")
    assert_math_text_upright(r"a & $E_\phi^{\mathrm{adp}}$ & $F_\beta^{\mathrm{w}}$ & $S_\alpha$ \\")
