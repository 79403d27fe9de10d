"""The Conv-LoRA Trans10K-v2 table (the poster's multi-class table) as transcribed in
reports/paper_values/convlora_trans10k.csv: every cell against the poster text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reports import paper

# the poster's "bg" column is the class the suite's trans10k names "background" (run key iou_background)
COLUMNS = ["acc", "miou"] + [
    f"iou_{c}" for c in "background shelf jar freezer window door eyeglass cup wall bowl bottle box".split()
]
# the poster's rows (Acc, mIoU, the 12 category IoUs), copied from the reference text, underlines dropped
POSTER = {
    "TransLab": "92.67 69.00 93.90 54.36 64.48 65.14 54.58 57.72 79.85 81.61 72.82 69.63 77.50 56.43",
    "Trans2Seg": "94.14 72.15 95.35 53.43 67.82 64.20 59.64 60.56 88.52 86.67 75.99 73.98 82.43 57.17",
    "decoder-only": "90.66 49.97 93.66 32.75 39.96 35.87 50.70 45.89 57.38 73.16 69.36 54.23 56.58 33.77",
    "VPT": "94.42 62.81 97.41 29.76 52.82 62.09 55.54 63.61 81.12 83.40 79.61 65.29 72.92 44.77",
    "LoRA": "94.80 66.01 97.50 42.17 57.82 64.35 53.44 64.08 87.28 85.28 80.43 63.67 77.97 49.56",
    "Conv-LoRA": "95.07 67.09 97.66 50.51 58.44 51.70 55.69 65.22 85.23 84.84 80.97 72.84 79.83 52.73",
}
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "convlora_poster.md"


def test_every_cell_of_the_csv_matches_the_poster() -> None:
    values = paper.load_table("convlora_trans10k")
    assert len(values) == len(POSTER) * len(COLUMNS)
    got = {(v.row, v.metric): v.mean for v in values}
    for row, cells in POSTER.items():
        for metric, cell in zip(COLUMNS, cells.split(), strict=True):
            assert got[(row, metric)] == float(cell), (row, metric)
    assert {v.dataset for v in values} == {"Trans10K-v2"}
    assert all(v.se is None for v in values)  # the poster prints no standard errors for this table


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the reference texts are not beside this clone")
def test_the_copied_rows_are_the_reference_texts() -> None:
    text = REFERENCE.read_text()
    lines = text[text.index("TransLab\t") :].splitlines()[: len(POSTER)]
    for line in lines:
        cells = line.split("\t")
        assert POSTER[cells[0]] == " ".join(re.sub(r"[<>u/]", "", c).strip() for c in cells[2:])
