"""A cell averaged over fewer seeds than the table's title says is marked, in Markdown and LaTeX (issue 20)."""

from __future__ import annotations

from bench.runs.runner import execute_run
from bench.runs.sweep import load_config, run_configs
from reports import render
from reports.report import build_report
from reports.table import build_table
from tests.tiny_runs import sweep_args


def _table(n_seeds: int):
    samples = {("a", "synth_polyp", "sm"): [0.5, 0.6, 0.7], ("b", "synth_polyp", "sm"): [0.4, 0.5]}
    table = build_table("smoke", ["a", "b"], [("synth_polyp", "sm")], samples, with_paper=False)
    table.n_seeds = n_seeds
    return table


def test_fewer_seeds_are_marked_in_markdown_and_latex():
    table = _table(3)
    md = render.to_markdown(table, "title").splitlines()
    row_a = next(line for line in md if line.startswith("| a |"))
    row_b = next(line for line in md if line.startswith("| b |"))
    assert "(n=" not in row_a and row_b.endswith("45.0 ± 5.00 (n=2) |")
    assert "(n=K): averaged over only K of the 3 seeds (the other runs are missing or failed)." in md
    tex = render.to_latex(table, "caption")
    assert r"45.0~$\pm$~5.00$^{n=2}$" in tex and r"a & \textbf{60.0~$\pm$~5.77} \\" in tex
    assert r"{\footnotesize $^{n=K}$ averaged over only K of the 3 seeds" in tex


def test_no_marker_when_every_cell_has_all_seeds():
    table = _table(2)
    assert "(n=" not in render.to_markdown(table, "title")
    assert "n=" not in render.to_latex(table, "caption")


def test_the_report_marks_a_row_missing_one_seed(tmp_path):
    args = sweep_args(tmp_path, "methods=[zero_shot,adapter]", "seeds=[0,1]", "train.epochs=1")
    cfg = load_config(args)
    for run in run_configs(cfg):
        if not (run.method == "adapter" and run.seed == 1):
            execute_run(run, cfg.runs_dir)
    lines = build_report(cfg).splitlines()
    assert "seeds [0, 1]" in lines[0] and "3/4 runs complete" in lines[0]
    adapter = next(line for line in lines if line.startswith("| adapter |"))
    zero = next(line for line in lines if line.startswith("| zero_shot |"))
    assert adapter.count("(n=1)") == 3 and "(n=" not in zero  # Sα, Eφ, Fβw columns
