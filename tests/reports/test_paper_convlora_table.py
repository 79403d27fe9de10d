"""The Conv-LoRA binary table (the poster's PEFT comparison) as transcribed in
reports/paper_values/convlora_table.csv: every cell against the poster text; and the ``convlora_table``
sweep's report, which shows those values and Δ for runs of the ``convlora`` protocol only."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from bench.config.protocols import get_protocol
from bench.contracts.dataset import dataset_info
from bench.runs.sweep import load_config
from reports import paper
from reports.report import build_report

from .fake_runs import find_run, write_run

# the poster's columns in order: (paper dataset, suite metric key); Jac is IoU, E_φ Conv-LoRA's mean E-measure
COLUMNS = [
    ("Kvasir", "sm"),
    ("Kvasir", "em_mean"),
    ("CVC-612", "sm"),
    ("CVC-612", "em_mean"),
    ("ISIC 2017", "iou"),
    ("ISIC 2017", "dice"),
    ("CAMO", "sm"),
    ("CAMO", "em_mean"),
    ("CAMO", "wfm"),
    ("SBU", "ber"),
    ("Leaf", "iou"),
    ("Leaf", "dice"),
    ("Road", "iou"),
    ("Road", "dice"),
]
# the poster's rows (after the "#Params (M) / Ratio (%)" cell), copied from the reference text, underlines dropped
POSTER = {
    "Domain Specific": "90.9 94.4 92.6 95.5 80.1 87.5 80.8 85.8 73.1 3.56 62.3 74.1 59.1 73.0",
    "SAM trained from scratch": "78.5 82.4 85.9 91.6 73.8 82.5 61.9 67.0 40.5 5.53 52.1 65.5 55.6 71.1",
    "decoder-only": "86.5 89.5 85.5 89.9 69.7 79.5 78.5 83.1 69.8 14.58 50.8 63.8 48.6 65.1",
    "BitFit": "90.8±0.57 93.8±0.98 89.0±0.40 91.6±0.98 76.4±0.45 84.7±0.35 86.8±0.33 90.7±0.28 81.5±0.19 "
    "3.16±0.128 71.4±1.15 81.7±1.01 60.6±0.15 75.2±0.11",
    "Adapter": "91.2±0.23 94.0±0.16 89.3±0.43 92.0±0.63 76.7±0.66 85.0±0.56 87.7±0.10 91.3±0.40 82.8±0.35 "
    "2.84±0.093 72.1±0.47 82.4±0.36 61.5±0.11 75.9±0.12",
    "VPT": "91.5±0.23 94.3±0.06 91.0±0.94 93.7±1.41 76.9±0.94 85.1±0.75 87.4±0.60 91.4±0.68 82.1±0.75 "
    "2.70±0.055 73.6±0.26 83.8±0.26 60.2±1.87 74.9±1.50",
    "LST": "89.7±0.25 93.3±0.37 89.4±0.37 92.4±0.54 76.4±1.05 84.9±0.79 83.3±0.28 88.0±0.23 77.1±0.02 "
    "3.18±0.012 70.2±0.87 81.1±0.82 60.2±0.26 74.9±0.22",
    "SAM-Adapter": "89.6±0.24 92.5±0.10 89.6±0.22 92.4±1.06 76.1±0.45 84.6±0.37 85.6±0.26 89.6±0.55 79.8±0.89 "
    "3.14±0.063 71.4±0.20 82.1±0.10 60.6±0.06 75.2±0.04",
    "SSF": "91.3±0.87 93.9±1.49 89.6±0.37 91.9±0.79 76.6±0.19 85.0±0.14 87.5±0.11 91.4±0.16 82.6±0.12 "
    "3.19±0.046 71.5±0.63 81.8±0.44 61.6±0.03 76.0±0.02",
    "LoRA": "91.2±0.28 93.8±0.22 90.7±0.04 92.5±0.41 76.6±0.23 84.9±0.22 88.0±0.24 91.9±0.42 82.8±0.16 "
    "2.74±0.079 73.7±0.20 83.6±0.13 62.2±0.21 76.5±0.18",
    "Conv-LoRA": "92.0±0.15 94.7±0.16 91.3±0.69 94.0±0.78 77.6±0.57 85.7±0.36 88.3±0.40 92.4±0.31 84.0±0.34 "
    "2.54±0.081 74.5±0.39 84.3±0.34 62.6±0.36 76.8±0.27",
}
LABELS = {
    "Domain Specific": "domain_specific",
    "SAM trained from scratch": "scratch [random init]",  # the sweep's row: scratch with backbone.random_init
    "decoder-only": "decoder_only",
    "BitFit": "bitfit",
    "Adapter": "adapter",
    "VPT": "vpt",
    "LST": "lst",
    "SAM-Adapter": "sam_adapter",
    "SSF": "ssf",
    "LoRA": "lora",
    "Conv-LoRA": "convlora",
}
SUITE_DATASETS = {
    "kvasir": "Kvasir",
    "cvc_clinicdb": "CVC-612",
    "isic2017": "ISIC 2017",
    "camo": "CAMO",
    "sbu": "SBU",
    "leaf": "Leaf",
    "massachusetts_roads": "Road",
}
REFERENCE = Path("/work/shared/reference/convlora_poster.md")


def _cell(text: str) -> tuple[float, float | None]:
    mean, _, se = text.partition("±")
    return float(mean), float(se) if se else None


def test_every_cell_of_the_csv_matches_the_poster() -> None:
    values = paper.load_table("convlora_table")
    assert len(values) == len(POSTER) * len(COLUMNS)
    got = {(v.row, v.dataset, v.metric): (v.label, v.mean, v.se) for v in values}
    assert len(got) == len(values)  # no cell twice
    for row, cells in POSTER.items():
        for (dataset, metric), cell in zip(COLUMNS, cells.split(), strict=True):
            assert got[(row, dataset, metric)] == (LABELS[row], *_cell(cell)), (row, dataset, metric)
    # the first three rows are printed without standard errors, every PEFT row with them
    no_se = {"Domain Specific", "SAM trained from scratch", "decoder-only"}
    assert all((v.se is None) == (v.row in no_se) for v in values)


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the reference texts are not beside this clone")
def test_the_copied_rows_are_the_reference_texts() -> None:
    text = REFERENCE.read_text()
    header = text[: text.index("Domain Specific\t")].splitlines()[-3:]
    groups = ["Kvasir", "", "CVC-612", "", "ISIC 2017", "", "CAMO", "", "", "SBU", "Leaf", "", "Road"]
    assert header[1].rstrip("\t").split("\t")[2:] == groups
    symbols = [re.sub(r"[$\\{}_ ]|uparrow|downarrow", "", c) for c in header[2].split("\t")[2:]]
    assert (
        symbols
        == ["Salpha", "Ephi"] * 2 + ["Jac", "Dice", "Salpha", "Ephi", "Fbeta^omega", "BER"] + ["IoU", "Dice"] * 2
    )
    lines = text[text.index("Domain Specific\t") :].splitlines()[: len(POSTER)]
    for line in lines:
        cells = line.split("\t")
        assert len(cells) == 2 + len(COLUMNS), cells[0]
        printed = " ".join(re.sub(r"</?u>|\s", "", c).replace(r"\pm", "±") for c in cells[2:])
        assert POSTER[cells[0]] == printed, cells[0]


def test_paper_keys_line_up_with_the_sweep_and_the_protocol():
    cfg = load_config(["sweep=convlora_table"])
    assert paper.sweep_table("convlora_table") == "convlora_table"
    assert paper.comparable("convlora_table", "convlora", False)
    assert not paper.comparable("convlora_table", "infosam", True)
    published = paper.lookup("convlora_table")
    protocol = get_protocol("convlora")
    for dataset in cfg.datasets:
        assert paper.paper_dataset(dataset) == (SUITE_DATASETS[dataset], False)
        info = dataset_info(dataset)
        for metric in protocol.metrics_for(info.family, tuple(info.metrics)):
            printed = [m for d, m in COLUMNS if d == SUITE_DATASETS[dataset]]
            if metric not in printed:  # e.g. MAE on Kvasir: the paper prints S_α and E_φ only
                continue
            for row in cfg.methods:  # a row is a name or {name, label, set} (the scratch row)
                method = row if isinstance(row, str) else f"{row['name']} [{row['label']}]"
                assert (paper.canonical_label(method), SUITE_DATASETS[dataset], metric) in published, (method, dataset)
    # every sweep dataset shows at least one published column
    shown = {SUITE_DATASETS[d] for d in cfg.datasets for (pd_, m) in COLUMNS if pd_ == SUITE_DATASETS[d]}
    assert shown == set(SUITE_DATASETS.values())


METHODS = ["lora", "convlora"]
DATASETS = ["kvasir", "sbu"]
SEEDS = [0, 1]


def _scores(method: str, seed: int, shift: float = 0.0) -> dict[str, float]:
    i = METHODS.index(method)
    base = {"sm": 0.85 + 0.02 * i + 0.01 * seed, "em_mean": 0.90 + 0.01 * i + 0.004 * seed, "wfm": 0.8, "mae": 0.05}
    return {**{k: v - shift for k, v in base.items()}, "ber": 0.03 - 0.004 * i + 0.002 * seed + shift, "iou": 0.7}


def _report(runs_dir: Path, *overrides: str) -> str:
    cfg = load_config(
        ["sweep=convlora_table", f"runs_dir={runs_dir}", f"methods=[{','.join(METHODS)}]"]
        + [f"datasets=[{','.join(DATASETS)}]", "seeds=[0,1]"]
        + list(overrides)
    )
    protocol = get_protocol(cfg.protocol)
    for dataset in DATASETS:
        info = dataset_info(dataset)
        for method in METHODS:
            for seed in SEEDS:
                convlora, clean = _scores(method, seed), _scores(method, seed, shift=0.05)
                record = {
                    "protocol": cfg.protocol,
                    "metric_definition": protocol.metrics,
                    "metrics_by_definition": {"clean": clean, "convlora": convlora},
                    "report_metrics": list(protocol.metrics_for(info.family, tuple(info.metrics))),
                }
                write_run(runs_dir, find_run(cfg, method, dataset, seed), convlora, record=record)
    return build_report(cfg)


def _row(text: str, name: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {name} "))
    return [c.strip() for c in line.strip("|").split("|")]


def _expected(values: list[float], published: float, bold: bool) -> str:
    mean = float(np.mean(values))
    se = float(np.std(values, ddof=1) / math.sqrt(len(values)))
    text = f"{100 * mean:.1f} ± {100 * se:.2f}"
    diff = 100 * mean - published
    return (f"**{text}**" if bold else text) + f" (paper {published:.1f}, Δ {'+' if diff >= 0 else '−'}{abs(diff):.1f})"


def test_report_shows_the_published_values_and_delta(tmp_path):
    md = _report(tmp_path)
    heads = _row(md, "method")
    assert heads == ["method"] + [f"kvasir (Kvasir) {m}" for m in ("S_α", "E_φ^mean", "F_β^w", "MAE")] + [
        "sbu (SBU) BER"
    ]
    sm, em = (_cell(c)[0] for c in POSTER["Conv-LoRA"].split()[:2])
    ber = _cell(POSTER["Conv-LoRA"].split()[9])[0]
    row = _row(md, "convlora = paper “Conv-LoRA”")
    assert row[1] == _expected([_scores("convlora", s)["sm"] for s in SEEDS], sm, bold=True)
    assert row[2] == _expected([_scores("convlora", s)["em_mean"] for s in SEEDS], em, bold=True)
    assert row[5] == _expected([_scores("convlora", s)["ber"] for s in SEEDS], ber, bold=True)  # lower is better
    assert "80.0 ± 0.00" in row[3] and "paper" not in row[3]  # F_β^w on Kvasir: not printed by the paper
    lora_ber = _cell(POSTER["LoRA"].split()[9])[0]
    assert _row(md, "lora = paper “LoRA”")[5] == _expected([_scores("lora", s)["ber"] for s in SEEDS], lora_ber, False)
    # a paper row the sweep does not run: its published values only
    scratch = _row(md, "scratch [random init] (not run) = paper “SAM trained from scratch”")
    assert scratch[1] == f"– (paper {_cell(POSTER['SAM trained from scratch'].split()[0])[0]:.1f})"
    assert "Paper: Conv-LoRA (ICLR 2024), binary-segmentation table; Δ = ours − paper (points)." in md
    assert "paper / Δ: the published values" in md


def test_other_protocol_runs_get_no_paper_columns(tmp_path):
    md = _report(tmp_path, "protocol=clean")
    assert "(paper " not in md and "(not run)" not in md
    assert "no paper / Δ columns (not the paper's protocol)" in md
