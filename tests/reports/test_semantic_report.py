"""Reports of a semantic sweep (``convlora_trans10k``) from fabricated runs: the headline Acc / mIoU table and
the per-class IoU table (mean ± SE over seeds, bold best, the Conv-LoRA paper's values and Δ under the
``convlora`` definitions) in Markdown, LaTeX, CSV and HTML; and binary reports unchanged (goldens)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.contracts.dataset import dataset_info
from bench.runs.sweep import load_config, run_configs
from reports import paper
from reports.report import build_report

from .binary_golden import GOLDEN_DIR, SWEEPS, binary_report
from .fake_runs import find_run, write_run

CLASSES = tuple("background shelf jar freezer window door eyeglass cup wall bowl bottle box".split())
METHODS = ["lora", "convlora"]
SEEDS = [0, 1]
PAPER_ROWS = {"lora": "LoRA", "convlora": "Conv-LoRA"}
CSV_PATH = Path(paper.__file__).resolve().parent / "paper_values" / "convlora_trans10k.csv"


def _paper(label: str, metric: str) -> float:
    """The published value, read from the csv here (not through reports.paper)."""
    with CSV_PATH.open(newline="") as fh:
        return next(float(r["mean"]) for r in csv.DictReader(fh) if r["label"] == label and r["metric"] == metric)


def _iou(method: str, cls: int, seed: int) -> float:
    """The convlora-definition IoU of a class (the clean definition records 0.05 less)."""
    return 0.40 + 0.03 * cls + 0.1 * METHODS.index(method) + 0.02 * seed + 0.003 * seed * cls


def _scores(method: str, seed: int, shift: float = 0.0) -> dict[str, float]:
    ious = {f"iou_{c}": _iou(method, i, seed) - shift for i, c in enumerate(CLASSES)}
    acc = 0.90 + 0.01 * METHODS.index(method) + 0.004 * seed - shift
    return {"acc": acc, "miou": float(np.mean(list(ious.values()))), **ious}


def _mean_se(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(len(values)))


def _expected(method: str, metric: str, values: list[float], bold: bool) -> str:
    mean, se = _mean_se(values)
    text = f"{100 * mean:.1f} ± {100 * se:.2f}"
    published = _paper(method, metric)
    diff = 100 * mean - published
    return (f"**{text}**" if bold else text) + f" (paper {published:.1f}, Δ {'+' if diff >= 0 else '−'}{abs(diff):.1f})"


@pytest.fixture()
def trans10k():
    """The registered ``trans10k`` dataset, whose classes the paper's csv keys must match."""
    assert dataset_info("trans10k").classes == CLASSES


def _semantic_report(runs_dir: Path, *overrides: str) -> tuple[str, Path]:
    cfg = load_config(
        [
            "sweep=convlora_trans10k",
            "report.name=convlora_trans10k",
            f"runs_dir={runs_dir}",
            f"methods=[{','.join(METHODS)}]",
            "seeds=[0,1]",
        ]
        + list(overrides)
    )
    for method in METHODS:
        for seed in SEEDS:
            convlora, clean = _scores(method, seed), _scores(method, seed, shift=0.05)
            record = {
                "protocol": cfg.protocol,
                "metric_definition": "convlora",
                "metrics_by_definition": {"clean": clean, "convlora": convlora},
                "report_metrics": ["acc", "miou"],
                "task": "semantic",
                "classes": list(CLASSES),
            }
            write_run(runs_dir, find_run(cfg, method, "trans10k", seed), convlora, record=record)
    return build_report(cfg), runs_dir / "_reports"


@pytest.fixture()
def semantic(trans10k, tmp_path):
    return _semantic_report(tmp_path)


def _row(text: str, name: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {name} "))
    return [c.strip() for c in line.strip("|").split("|")]


def _sections(md: str) -> tuple[str, str]:
    head, sep, classes = md.partition("#### trans10k: per-class IoU")
    assert sep, "no per-class section"
    return head, classes


def test_the_sweep_is_the_conv_lora_trans10k_table(trans10k):
    cfg = load_config(["sweep=convlora_trans10k"])
    assert cfg.protocol == "convlora" and cfg.datasets == ["trans10k"] and cfg.seeds == [0, 1, 2]
    assert cfg.methods == ["decoder_only", "vpt", "lora", "convlora"] and cfg.backbone.name == "sam_vit_h"
    assert cfg.task.head == "auto"  # the protocol decides the head
    assert len(run_configs(cfg)) == 4 * 3
    assert paper.sweep_table("convlora_trans10k") == "convlora_trans10k"


def test_paper_keys_line_up_with_the_run_keys():
    assert "convlora_trans10k" in paper.available_tables()
    assert paper.available_tables()[:13] == [f"table{n}" for n in range(1, 14)]
    published = paper.lookup("convlora_trans10k")
    for label in ("decoder_only", "vpt", "lora", "convlora", "translab", "trans2seg"):
        for metric in ["acc", "miou"] + [f"iou_{c}" for c in CLASSES]:
            assert (paper.canonical_label(label), "Trans10K-v2", metric) in published, (label, metric)
    assert paper.paper_dataset("trans10k") == ("Trans10K-v2", False)
    assert paper.paper_dataset("synth_shapes") == ("Trans10K-v2", True)


def test_headline_table_shows_acc_and_miou_with_paper_and_delta(semantic):
    md, _ = semantic
    head, _ = _sections(md)
    assert "| method | trans10k (Trans10K-v2) Acc | trans10k (Trans10K-v2) mIoU |" in head
    assert "IoU(shelf)" not in head
    for method in METHODS:
        row = _row(head, f"{method} = paper “{PAPER_ROWS[method]}”")
        for j, metric in enumerate(["acc", "miou"], start=1):
            values = [_scores(method, s)[metric] for s in SEEDS]  # the convlora definitions, not clean
            assert row[j] == _expected(method, metric, values, bold=method == "convlora"), (method, metric)
    assert "Paper: Conv-LoRA (ICLR 2024), Trans10K-v2 table; Δ = ours − paper (points)." in head
    assert "paper / Δ: the published values" in head


def test_per_class_table_mean_se_bold_paper_and_delta(semantic):
    md, _ = semantic
    _, classes = _sections(md)
    heads = _row(classes, "method")
    assert heads == ["method"] + [f"trans10k (Trans10K-v2) IoU({c})" for c in CLASSES]
    for method in METHODS:
        row = _row(classes, f"{method} = paper “{PAPER_ROWS[method]}”")
        for i, cls in enumerate(CLASSES):
            values = [_iou(method, i, s) for s in SEEDS]
            assert row[1 + i] == _expected(method, f"iou_{cls}", values, bold=method == "convlora"), cls
    # the paper's rows the sweep does not run: their published class IoUs only
    translab = _row(classes, "translab (not run) = paper “TransLab”")
    assert translab[1 + CLASSES.index("shelf")] == f"– (paper {_paper('translab', 'iou_shelf'):.1f})"
    assert _row(classes, "vpt (not run) = paper “VPT”")[1] == f"– (paper {_paper('vpt', 'iou_background'):.1f})"


def test_csv_has_the_per_class_rows_as_fractions(semantic):
    _, out = semantic
    frame = pd.read_csv(out / "convlora_trans10k.csv")
    ours = frame[frame["mean"].notna()]
    assert len(ours) == len(METHODS) * (2 + len(CLASSES))  # headline + per-class cells we ran
    shelf = frame[(frame.method == "convlora") & (frame.metric == "iou_shelf")].iloc[0]
    mean, se = _mean_se([_iou("convlora", 1, s) for s in SEEDS])
    assert shelf["mean"] == pytest.approx(mean) and shelf["se"] == pytest.approx(se)
    assert shelf["paper_mean"] == pytest.approx(_paper("convlora", "iou_shelf") / 100)
    assert shelf["diff"] == pytest.approx(mean - _paper("convlora", "iou_shelf") / 100)
    assert bool(shelf["best"]) and shelf["paper_table"] == "convlora_trans10k"


def test_latex_and_html_carry_the_per_class_table(semantic):
    _, out = semantic
    tex = (out / "convlora_trans10k.tex").read_text()
    assert tex.count(r"\begin{table}") == 2 and tex.count(r"\end{table}") == 2
    headline, per_class = tex.split(r"\end{table}")[:2]
    assert "& Acc & mIoU \\\\" in headline
    assert "& " + " & ".join(f"IoU({c})" for c in CLASSES) + r" \\" in per_class
    mean, se = _mean_se([_iou("convlora", 1, s) for s in SEEDS])
    assert rf"\textbf{{{100 * mean:.1f}~$\pm$~{100 * se:.2f}}}" in per_class
    assert rf"{{\footnotesize {_paper('convlora', 'iou_shelf'):.1f} (" in per_class
    page = (out / "convlora_trans10k.html").read_text()
    assert "trans10k: per-class IoU" in page and "IoU(shelf)" in page and "mIoU" in page


def test_other_protocol_runs_get_no_paper_columns(trans10k, tmp_path):
    md, _ = _semantic_report(tmp_path, "protocol=clean")
    _, classes = _sections(md)
    assert "paper" not in classes and "(not run)" not in classes
    assert "no paper / Δ columns (not the paper's protocol)" in md


@pytest.mark.parametrize("sweep", sorted(SWEEPS))
def test_binary_reports_are_unchanged(tmp_path, sweep):
    """The goldens were written by the reports before the semantic features (binary_golden.py)."""
    files = binary_report(tmp_path, sweep)
    for suffix, text in files.items():
        assert text == (GOLDEN_DIR / f"binary_{sweep}{suffix}").read_text(), suffix
        assert "per-class" not in text and "IoU(" not in text
    assert files[".tex"].count(r"\begin{table}") == 1
