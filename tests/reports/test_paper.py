"""The transcribed paper values (reports/paper_values/) against the paper text, and the sweep mappings."""

from __future__ import annotations

import pytest

from bench.config import row_label
from bench.runs.sweep import load_config, run_configs
from reports import paper
from reports.table import build_table


def value(table: str, row: str, dataset: str, metric: str) -> tuple[float, float | None]:
    hits = [v for v in paper.load_table(table) if (v.row, v.dataset, v.metric) == (row, dataset, metric)]
    assert len(hits) == 1, (table, row, dataset, metric, hits)
    return hits[0].mean, hits[0].se


@pytest.mark.parametrize(
    "table, row, dataset, metric, expected",
    [  # read off /work/shared/reference/infosam_paper.md by hand
        ("table1", "SAM", "CAMO", "sm", (79.7, 0.02)),
        ("table1", "HQ-SAM", "ISIC 2017", "dice", (92.4, 0.19)),
        ("table1", "Adapter+Ours", "Road", "dice", (75.8, 0.27)),
        ("table2", "Teacher", "Kvasir", "sm", (83.0, 0.10)),  # differs from Table 1's SAM row (71.4)
        ("table2", "TinySAM", "Road", "iou", (25.7, 1.19)),
        ("table3", "(b) MobileSAM", "Road", "iou", (52.3, 0.46)),
        ("table4", "row 2: fixed-dot relation + L_d", "Leaf", "iou", (75.2, None)),
        ("table5", "TinySAM w RM", "Road", "iou", (33.9, 0.32)),
        ("table6", "InfoSAM-T (frozen RM from Kvasir)", "Leaf", "iou", (75.4, 0.45)),
        ("table7", "ReviewKD", "CVC-612", "wfm", (92.2, 1.40)),
        ("table8", "InfoSAM(Ours)", "CHAMELEON", "wfm", (89.6, 0.22)),
        ("table8", "TinySAM", "COD10K", "em_adp", (94.0, 0.11)),
        ("table9", "decoder-only", "Road", "dice", (64.7, 0.49)),
        ("table10", "TinySAM", "Road", "dice", (36.5, 3.22)),
        ("table11", "α = 3", "-", "time_ms", (35.4, 31.2)),
        ("table12", "w/o RT", "Road", "iou", (59.6, 0.69)),
        ("table13", "Attn-3", "Road", "iou", (61.7, 0.06)),
    ],
)
def test_spot_checks_against_the_paper_text(table, row, dataset, metric, expected):
    assert value(table, row, dataset, metric) == expected


def test_every_table_is_complete():
    # rows × columns of each printed table (Table 3: both parts; Table 11 with its timing column)
    sizes = {1: 11 * 11, 2: 12 * 11, 3: 16 * 3, 4: 3 * 3, 5: 4 * 2, 6: 4, 7: 19 * 6, 8: 19 * 9, 9: 8 * 7}
    sizes |= {10: 8 * 7, 11: 3 * 3, 12: 2 * 2, 13: 5 * 2}
    # the InfoSAM tables in their order, then the other papers' tables (Conv-LoRA's binary and Trans10K-v2 tables)
    assert paper.available_tables() == [f"table{n}" for n in range(1, 14)] + ["convlora_table", "convlora_trans10k"]
    for n, size in sizes.items():
        assert len(paper.load_table(f"table{n}")) == size, n
        assert all(0 <= v.mean <= 100 for v in paper.load_table(f"table{n}"))


def test_lookup_by_suite_labels():
    t2 = paper.lookup("table2")
    # a lone distiller is the adapter student with it: both spellings find the paper's row
    assert t2[(paper.canonical_label("vid"), "Kvasir", "sm")].mean == 93.7
    assert t2[(paper.canonical_label("adapter+vid"), "Kvasir", "sm")].row == "VID"
    t11 = paper.lookup("table11")
    assert t11[(paper.canonical_label("adapter+infosam [distill.alpha=2.0]"), "Road", "iou")].mean == 61.4
    t3 = paper.lookup("table3")  # (a) and (b) share rows with equal numbers
    assert t3[("zero_shot", "Leaf", "iou")].mean == 42.7


def test_datasets_and_reference_rows():
    assert paper.paper_dataset("synth_polyp") == ("Kvasir", True)
    assert paper.paper_dataset("kvasir") == ("Kvasir", False)
    assert paper.paper_dataset("massachusetts_roads") == ("Road", False)
    assert paper.paper_dataset("sbu") == ("SBU", False)  # Conv-LoRA's binary table
    assert paper.paper_dataset("synth_shapes") == ("Trans10K-v2", True) and paper.paper_dataset("nope") == (None, False)
    assert paper.sweep_table("table7") == "table7" and paper.sweep_table("fig6") is None


def test_each_sweep_names_its_reference_row_and_the_table_tests_against_it():
    assert load_config(["sweep=table2"]).report.reference == "adapter"
    assert load_config(["sweep=demo"]).report.reference is None  # the default: zero_shot
    pairs = load_config(["sweep=table5"]).report.reference
    assert pairs == {"tinysam+rm": "tinysam", "mobilesam+rm": "mobilesam"}
    labels = ["zero_shot", "adapter", "vid", "mobilesam", "mobilesam+rm"]
    samples = {(r, "synth_polyp", "sm"): [0.5 + 0.01 * i, 0.52 + 0.01 * i] for i, r in enumerate(labels)}
    cols = [("synth_polyp", "sm")]
    assert build_table("table2", labels, cols, samples, with_paper=False, reference="adapter").references == {
        "zero_shot": "adapter",
        "adapter": None,
        "vid": "adapter",
        "mobilesam": "adapter",
        "mobilesam+rm": "adapter",
    }
    assert build_table("table5", labels, cols, samples, with_paper=False, reference=pairs).references == {
        "zero_shot": None,
        "adapter": None,
        "vid": None,
        "mobilesam": None,
        "mobilesam+rm": "mobilesam",
    }
    assert build_table("demo", labels, cols, samples, with_paper=False).references["vid"] == "zero_shot"


def test_a_reference_row_the_table_does_not_have_is_named_in_a_warning(caplog):
    samples = {("adapter", "synth_polyp", "sm"): [0.5]}
    with caplog.at_level("WARNING"):
        table = build_table("x", ["adapter"], [("synth_polyp", "sm")], samples, reference="adaptr")
    assert table.references == {"adapter": None}
    assert "report.reference='adaptr' is not a row of this table" in caplog.text


def test_table13_sweep_runs_the_papers_attention_depths_and_each_row_has_its_values():
    cfg = load_config(["sweep=table13"])
    runs = run_configs(cfg)
    layers = {row_label(r): r.distill.get("relation_layers") for r in runs}
    attn = {label: n for label, n in layers.items() if "Attn-" in label}
    assert attn == {f"adapter+infosam [Attn-{n}]": n for n in (1, 3, 5)}  # the paper's Attn-1 / 3 / 5, no Attn-2
    assert len(runs) == 5 * 2 * 3
    published = paper.lookup("table13")
    for label in layers:
        for dataset in cfg.datasets:
            pds, standin = paper.paper_dataset(dataset)
            assert not standin and (paper.canonical_label(label), pds, "iou") in published, (label, dataset)
    assert len(published) == len(layers) * len(cfg.datasets)  # and no paper row without a sweep row


def test_unknown_table_names_the_available_ones():
    with pytest.raises(KeyError, match="table1, table2"):
        paper.load_table("table99")
