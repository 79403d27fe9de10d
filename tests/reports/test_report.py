"""Reports built from fake run directories: mean ± SE, bold best, missing cells, paper values and
differences, Welch marks, LaTeX structure, CSV, figures."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.runs.sweep import load_config, run_configs, run_name
from reports.figures.bf1 import bf1_of_run
from reports.report import build_report

from .fake_runs import find_run, per_image_rows, write_run

# adapter+infosam on synth_leaf is never run: its cells must show as missing
SM = {  # synth_polyp S_α per seed
    "zero_shot": [0.70, 0.71, 0.72],
    "adapter": [0.80, 0.82, 0.84],
    "adapter+infosam": [0.90, 0.91, 0.93],
}
IOU = {"zero_shot": [0.30, 0.30, 0.31], "adapter": [0.60, 0.58, 0.61]}  # synth_leaf


@pytest.fixture()
def table1(tmp_path):
    cfg = load_config(
        [
            "sweep=table1",
            "report.name=table1",
            f"runs_dir={tmp_path}",
            "methods=[zero_shot,adapter,adapter+infosam]",
            "datasets=[synth_polyp,synth_leaf]",
        ]
    )
    for method, values in SM.items():
        for seed, v in enumerate(values):
            metrics = {"sm": v, "em_adp": v + 0.05, "wfm": v - 0.05}
            write_run(tmp_path, find_run(cfg, method, "synth_polyp", seed), metrics)
    for method, values in IOU.items():
        for seed, v in enumerate(values):
            write_run(tmp_path, find_run(cfg, method, "synth_leaf", seed), {"iou": v, "dice": v + 0.1})
    markdown = build_report(cfg)
    return cfg, markdown, tmp_path / "_reports"


def _row(markdown: str, name: str) -> list[str]:
    line = next(ln for ln in markdown.splitlines() if ln.startswith(f"| {name} "))
    return [c.strip() for c in line.strip("|").split("|")]


def test_markdown_cells_mean_se_bold_paper_diff_and_mark(table1):
    cfg, md, _ = table1
    assert "15/18 runs complete" in md
    row = _row(md, "adapter = paper “Adapter”")
    # S_α: mean 82.0, SE = std(ddof=1)/sqrt(3) = 0.02/sqrt(3) = 1.15 points; paper Table 1 Kvasir 93.4
    t = stats.ttest_ind(SM["adapter"], SM["zero_shot"], equal_var=False)
    assert t.pvalue < 0.05
    assert row[1] == "82.0 ± 1.15† (paper 93.4, Δ −11.4)"
    best = _row(md, "adapter+infosam = paper “Adapter+Ours”")
    assert best[1].startswith("**91.3 ± 0.88**†")  # (0.90, 0.91, 0.93): mean 91.33, SE 0.882
    assert best[1].endswith("(paper 94.4, Δ −3.1)")
    # leaf IoU: adapter best (bold), adapter+infosam missing but the paper's value is still shown
    assert row[4].startswith("**59.7 ± 0.88**")
    assert best[4] == "– (paper 75.6)"
    zero = _row(md, "zero_shot = paper “SAM”")
    assert "†" not in zero[1] and zero[1].startswith("71.0 ± 0.58 (paper 71.4")  # the reference: never marked


def test_paper_rows_not_run_are_listed_and_standins_flagged(table1):
    _, md, _ = table1
    hq = _row(md, "hqsam (not run) = paper “HQ-SAM”")
    assert hq[1] == "– (paper 91.1)" and hq[4] == "– (paper 66.2)"
    assert "synth_polyp (≈Kvasir*) S_α" in md and "synth_leaf (≈Leaf*) IoU" in md
    assert "synth_polyp for Kvasir" in md and "does not measure it" in md


def test_csv_holds_fractions_paper_values_and_welch_p(table1):
    _, _, out = table1
    df = pd.read_csv(out / "table1.csv")
    cell = df[(df.method == "adapter") & (df.dataset == "synth_polyp") & (df.metric == "sm")].iloc[0]
    assert cell["mean"] == pytest.approx(0.82)
    assert cell["se"] == pytest.approx(np.std([0.80, 0.82, 0.84], ddof=1) / math.sqrt(3))
    assert cell["n"] == 3 and cell["reference"] == "zero_shot" and cell["standin"]
    assert cell["paper_mean"] == pytest.approx(0.934) and cell["paper_se"] == pytest.approx(0.0012)
    assert cell["diff"] == pytest.approx(0.82 - 0.934)
    expected = stats.ttest_ind([0.80, 0.82, 0.84], [0.70, 0.71, 0.72], equal_var=False).pvalue
    assert cell["p_welch"] == pytest.approx(expected, rel=1e-12)
    missing = df[(df.method == "adapter+infosam") & (df.dataset == "synth_leaf") & (df.metric == "iou")].iloc[0]
    assert missing["n"] == 0 and pd.isna(missing["mean"]) and missing["paper_mean"] == pytest.approx(0.756)


def _latex_rows(tex: str) -> list[str]:
    body = tex[tex.index(r"\toprule") : tex.index(r"\bottomrule")]
    return [ln for ln in body.splitlines() if ln.rstrip().endswith(r"\\")]


def test_latex_is_booktabs_balanced_and_rectangular(table1):
    _, _, out = table1
    tex = (out / "table1.tex").read_text()
    for token in (r"\begin{tabular}", r"\toprule", r"\midrule", r"\bottomrule", r"\end{tabular}", r"\cmidrule"):
        assert token in tex
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    ncols = len(re.search(r"\\begin\{tabular\}\{([lcr]+)\}", tex).group(1))
    rows = _latex_rows(tex)
    for line in rows:
        widths = [int(w) for w in re.findall(r"\\multicolumn\{(\d+)\}", line)]
        assert line.count("&") + 1 - len(widths) + sum(widths) == ncols, line
    assert any(r"\textbf{91.3~$\pm$~0.88}$^\dagger$" in line for line in rows)
    assert r"adapter+infosam" in tex and r"zero\_shot" in tex
    assert any("93.4 ($-$11.4)" in line for line in rows)
    assert "--" in tex  # missing cells
    assert tex.isascii()  # every symbol escaped to a command: compiles with plain pdflatex


def test_one_seed_gives_no_se_and_no_mark(tmp_path):
    cfg = load_config(["sweep=table12", f"runs_dir={tmp_path}", "datasets=[synth_leaf]", "seeds=[0]"])
    for run, v in zip(run_configs(cfg), (0.5, 0.9)):
        write_run(tmp_path, run, {"iou": v, "dice": v})
    md = build_report(cfg)
    row = _row(md, "adapter+infosam [w/o RT] = paper “w/o RT”")
    assert row[1] == "50.0 (paper 74.6, Δ −24.6)"
    assert "**90.0** (paper 75.6" in md


def test_lambda_grid_heatmap_written(tmp_path):
    cfg = load_config(
        [
            "sweep=lambda_grid",
            "report.name=lambda_grid",
            f"runs_dir={tmp_path}",
            "datasets=[synth_polyp,synth_leaf]",
            "seeds=[0,1]",
            "grid={distill.lambda1: [0.5, 1.0], distill.lambda2: [0.5, 1.0]}",
        ]
    )
    runs = run_configs(cfg)
    assert len(runs) == 16
    for i, run in enumerate(runs[:-2]):  # the last grid point of synth_leaf has no run: a blank cell
        write_run(tmp_path, run, {"sm": 0.5 + i / 100, "iou": 0.4, "dice": 0.5, "em_adp": 0.6, "wfm": 0.5})
    md = build_report(cfg)
    assert "distill.lambda1=1.0,distill.lambda2=0.5" in md
    for suffix in ("png", "pdf"):
        path = tmp_path / "_reports" / f"lambda_grid_heatmap.{suffix}"
        assert path.is_file() and path.stat().st_size > 1000


def test_bf1_curves_and_relation_maps_written(tmp_path):
    cfg = load_config(
        [
            "sweep=fig7",
            "report.name=fig7",
            f"runs_dir={tmp_path}",
            "methods=[adapter,adapter+infosam]",
            "seeds=[0,1]",
            "datasets=[synth_leaf]",
        ]
    )
    for run in run_configs(cfg):
        rows = per_image_rows([0.2, 0.4, 0.5, 0.6])
        rd = write_run(tmp_path, run, {"iou": 0.5, "dice": 0.6}, per_image=rows)
        if run.method == "adapter+infosam":
            folder = rd.path / "relation_maps"
            folder.mkdir()
            rng = np.random.default_rng(run.seed)
            for epoch in (1, 3):
                maps = rng.random((2, 4, 4, 4)).astype(np.float32)
                np.savez_compressed(folder / f"epoch_{epoch:03d}.npz", teacher=maps[0], student=maps[1])
    build_report(cfg)
    run = run_configs(cfg)[0]
    curve = bf1_of_run(tmp_path / run_name(run), {"metrics": {}})  # per_image.csv means, one per tolerance
    np.testing.assert_allclose(curve, [0.2, 0.4, 0.5, 0.6], rtol=1e-12)
    out = tmp_path / "_reports"
    for name in ("fig7_bf1", "fig7_relation_maps_synth_leaf_adapter_infosam"):
        for suffix in ("png", "pdf"):
            assert (out / f"{name}.{suffix}").stat().st_size > 1000
    assert not list(out.glob("*heatmap*"))
