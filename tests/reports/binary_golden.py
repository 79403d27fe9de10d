"""A fabricated binary sweep whose report files are kept as goldens (``tests/reports/golden/``): the files a
binary report writes must not change when the semantic features are added. Uses only what the reports had
before them, so the goldens could be (and were) written by the code before them:
``python -m tests.reports.binary_golden DIR`` writes them into ``DIR``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from bench.runs.sweep import load_config
from reports.report import build_report

from .fake_runs import find_run, write_run

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
# sweep -> its methods: an InfoSAM table and the Conv-LoRA binary table (paper / Δ, stand-ins; the convlora_table
# goldens were rewritten when its paper values were added, reports/paper_values/convlora_table.csv)
SWEEPS = {"table1": ["zero_shot", "adapter"], "convlora_table": ["decoder_only", "lora"]}
SUFFIXES = (".md", ".tex", ".csv")
RUNS_TOKEN = "<RUNS>"  # the runs folder in the files (none so far), so that the goldens do not depend on it


def binary_report(runs_dir: Path, sweep: str) -> dict[str, str]:
    """Fabricate 2 methods × 2 datasets × 2 seeds of ``sweep`` under ``runs_dir``, build the report into
    ``runs_dir/_reports`` and return ``suffix -> file text``."""
    methods = SWEEPS[sweep]
    cfg = load_config(
        [
            f"sweep={sweep}",
            f"runs_dir={runs_dir}",
            f"methods=[{','.join(methods)}]",
            "datasets=[synth_polyp,synth_leaf]",
            "seeds=[0,1]",
            f"report.name={sweep}",  # the goldens predate report names of their own (reports/names.py)
        ]
    )
    for m, method in enumerate(methods):
        for seed in (0, 1):
            v = 0.6 + 0.2 * m + 0.013 * seed
            polyp = {"sm": v, "em_adp": v + 0.05, "em_mean": v + 0.04, "wfm": v - 0.05, "mae": 0.1 - v / 10}
            write_run(runs_dir, find_run(cfg, method, "synth_polyp", seed), polyp)
            write_run(runs_dir, find_run(cfg, method, "synth_leaf", seed), {"iou": v - 0.3, "dice": v - 0.2})
    build_report(cfg)
    out = runs_dir / "_reports"
    return {s: (out / f"{sweep}{s}").read_text().replace(str(runs_dir), RUNS_TOKEN) for s in SUFFIXES}


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    target = Path(sys.argv[1])
    for name in SWEEPS:
        runs = target / f"runs_{name}"
        runs.mkdir(parents=True)
        for suffix, text in binary_report(runs, name).items():
            (target / f"binary_{name}{suffix}").write_text(text)
