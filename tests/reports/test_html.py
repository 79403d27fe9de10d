"""The sweep page, the qualitative figure and the per-image distributions: produced for a real smoke sweep
and for a half-finished paper sweep; the page parses, every file it references exists, its numbers are the
CSV's, and the runs folder is left as it was."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.data.masks import MaskKeeper
from bench.eval.metrics import METRICS
from bench.runs.results import RunDir
from bench.runs.sweep import load_config, run_configs, run_name
from reports.distributions import paired_counts, per_image_frame
from reports.figures.qualitative import collect, write_qualitative
from reports.html import _provenance_rows
from reports.report import build_report

from .fake_runs import find_run, write_run
from .page_parser import expand, parse_page


def _page(out: Path, sweep: str):
    return parse_page((out / f"{sweep}.html").read_text())


def _columns(table: list[list[tuple[str, str, int]]]) -> list[tuple[str, ...]]:
    """Column keys of the results table: its header rows (all but the row-name column), expanded."""
    heads = [expand(row)[1:] for row in table if row and all(tag == "th" for tag, _, _ in row)]
    return list(zip(*heads))


def _body(table: list[list[tuple[str, str, int]]]) -> dict[str, list[str]]:
    return {row[0][1]: [text for _, text, _ in row[1:]] for row in table if row and row[1][0] == "td"}


def _expected(mean: float, se: float) -> str:
    text = f"{100 * mean:.1f}"
    return text if se is None or math.isnan(se) else f"{text} ± {100 * se:.2f}"


def check_numbers_equal_csv(out: Path, sweep: str) -> int:
    """Every number of the page's results table is the CSV's; returns how many cells were compared."""
    page = _page(out, sweep)
    table = page.tables["results"]
    columns, body = _columns(table), _body(table)
    df = pd.read_csv(out / f"{sweep}.csv")
    checked = 0
    for _, r in df.iterrows():
        label = METRICS[r.metric].label
        row = next(v for k, v in body.items() if k == r.method or k.startswith((f"{r.method} (", f"{r.method} = ")))
        for j, col in enumerate(columns):
            if not (col[0].split(" (")[0] == r.dataset and col[1] == label):
                continue
            kind = col[2] if len(col) > 2 else "ours"
            text = row[j].rstrip("†")
            if kind == "ours":
                assert text == ("–" if r.n == 0 else _expected(r["mean"], r["se"])), (r.method, col, text)
            elif kind == "paper":
                assert text == ("–" if pd.isna(r.paper_mean) else f"{100 * r.paper_mean:.1f}"), (r.method, col)
            else:
                assert text == (
                    "–" if pd.isna(r["diff"]) else f"{'+' if r['diff'] >= 0 else '−'}{abs(100 * r['diff']):.1f}"
                )
            checked += 1
    return checked


def test_smoke_sweep_gets_page_qualitative_and_per_image_figures(smoke_report):
    out = smoke_report.out
    for name in (
        "smoke.html",
        "smoke_qualitative.png",
        "smoke_qualitative.pdf",
        "smoke_per_image.png",
        "smoke_wins.csv",
    ):
        assert (out / name).is_file(), name
    assert smoke_report.runs_after == smoke_report.runs_before  # the runs folder is read, never written
    runs = [(r, run_name(r)) for r in run_configs(smoke_report.cfg)]
    records = {n: RunDir(smoke_report.cfg.runs_dir, r).read_metrics() for r, n in runs}
    kept = collect(smoke_report.cfg.runs_dir, runs, records)
    assert list(kept) == ["synth_polyp"] and sorted(kept["synth_polyp"]) == ["adapter", "zero_shot"]
    names = [[e["name"] for e in k.index["images"]] for k in kept["synth_polyp"].values()]
    assert names[0] == names[1] and len(names[0]) == 4  # the same 4 test images for every method
    with Image.open(out / "smoke_qualitative.png") as im:  # 4 image rows x (image, GT, 2 methods)
        assert 0.8 < im.height / im.width < 1.25
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 20  # drawn, not blank


def test_smoke_page_parses_and_everything_it_references_exists(smoke_report):
    out = smoke_report.out
    text = (out / "smoke.html").read_text()
    page = parse_page(text)
    assert set(page.images) == {"smoke_qualitative.png", "smoke_per_image.png"}
    for ref in page.images + page.links:
        assert "://" not in ref  # no server, no CDN
        assert (out / ref).is_file(), ref
    logs = [ref for ref in page.links if ref.endswith("run.log")]
    assert len(logs) == 2  # one per run
    assert "<script" not in text and "<link" not in text
    status = page.tables["status"]
    assert sorted(row[0][1] for row in status[1:]) == ["done", "done"]
    assert "2 done, 0 running, 0 failed, 0 corrupt, 0 interrupted, 0 missing" in text
    records = page.tables["provenance"][1:]
    commits = [row[0][1] for row in records]
    assert len(commits) == 1 and len(commits[0].split()[0]) == 12  # both runs, one record: this checkout or archive
    assert len(records[0][1][1]) == 12  # the source digest's prefix


def test_provenance_rows_show_the_digest_without_a_commit_and_read_records_without_the_new_fields():
    source = {"kind": "archive", "digest": "d" * 64, "commit": None}
    archive = {"run": "a", "provenance": {"commit": None, "dirty": None, "source": source}}
    old = {"run": "o", "provenance": {"commit": "c" * 40, "dirty": False, "packages": {"torch": "2.1"}}}
    clone = {"run": "c", "provenance": {"commit": "c" * 40, "dirty": False, "source": {**source, "kind": "git"}}}
    archive_of_c = {"run": "ac", "provenance": {"commit": "c" * 40, "dirty": None, "source": source}}
    rows = _provenance_rows([archive, old, {"run": "none"}, clone, archive_of_c])
    assert rows[0]["commit"] == "dddddddddddd (archive digest)" and rows[0]["source"] == "dddddddddddd"
    assert rows[3]["runs"] == ["c", "ac"]  # a clone and an archive of one commit: one group
    assert rows[1]["commit"] == "c" * 12 and rows[1]["source"] == rows[1]["torch build"] == "–"
    assert rows[2]["commit"] == "no record (older run)"


def test_smoke_page_numbers_equal_the_csv(smoke_report):
    assert check_numbers_equal_csv(smoke_report.out, "smoke") == 6  # 2 rows x 3 metrics
    wins = pd.read_csv(smoke_report.out / "smoke_wins.csv")
    page = _page(smoke_report.out, "smoke")
    row = page.tables["wins"][1]
    counts = [str(int(wins.iloc[0][k])) for k in ("wins", "losses", "ties", "n")]
    assert [t for _, t, _ in row] == ["adapter", "synth_polyp", "S_α", "zero_shot", *counts]
    assert int(wins.iloc[0]["n"]) == 4


@pytest.fixture()
def half_finished(tmp_path):
    """table1 on two datasets: complete, failed and missing runs, no per-image files, no masks."""
    cfg = load_config(
        [
            "sweep=table1",
            "report.name=table1",
            f"runs_dir={tmp_path / 'runs'}",
            "methods=[zero_shot,adapter]",
            "datasets=[synth_polyp]",
        ]
    )
    for seed, v in enumerate((0.70, 0.72)):
        write_run(cfg.runs_dir, find_run(cfg, "zero_shot", "synth_polyp", seed), {"sm": v, "em_adp": v, "wfm": v})
    write_run(cfg.runs_dir, find_run(cfg, "adapter", "synth_polyp", 0), {"sm": 0.8, "em_adp": 0.8, "wfm": 0.8})
    failed = RunDir(cfg.runs_dir, find_run(cfg, "adapter", "synth_polyp", 1))
    failed.start()
    failed.log_file.write_text("Traceback ...\nRuntimeError: out of memory\n")
    failed.write_failure("RuntimeError: out of memory")
    build_report(cfg, out_dir=tmp_path / "out")
    return cfg, tmp_path / "out"


def test_half_finished_sweep_page_shows_states_missing_cells_and_paper_values(half_finished):
    cfg, out = half_finished
    text = (out / "table1.html").read_text()
    page = parse_page(text)
    states = sorted(row[0][1] for row in page.tables["status"][1:])
    assert states == ["done"] * 3 + ["failed"] + ["missing"] * (len(run_configs(cfg)) - 4)
    failed_row = next(row for row in page.tables["status"][1:] if row[0][1] == "failed")
    assert "out of memory" in failed_row[4][1]
    for ref in page.links:
        assert (out / ref).is_file(), ref
    assert any(ref.endswith("run.log") for ref in page.links)
    assert page.images == [] and "No figure applies" in text  # no masks, no per-image files: no figure
    columns = _columns(page.tables["results"])
    assert ("synth_polyp (≈Kvasir*)", "S_α", "paper") in columns and ("synth_polyp (≈Kvasir*)", "S_α", "Δ") in columns
    hq = _body(page.tables["results"])["hqsam (not run) = paper “HQ-SAM”"]
    assert hq[0] == "–" and hq[1] == "91.1"  # a paper row the sweep does not run: ours missing, paper shown
    assert check_numbers_equal_csv(out, "table1") > 30


def test_paired_counts_follow_the_metric_direction():
    rows = []
    for seed in (0, 1):
        for i, (ref, ours) in enumerate([(0.5, 0.6), (0.5, 0.4), (0.5, 0.5)]):
            for method, v in (("ref", ref), ("m", ours + seed * 0.2)):
                for metric in ("iou", "ber"):
                    rows.append(
                        {
                            "method": method,
                            "dataset": metric,
                            "seed": seed,
                            "name": f"i{i}",
                            "metric": metric,
                            "value": v,
                        }
                    )
    frame = pd.DataFrame(rows)
    counts = paired_counts(frame, {"m": "ref", "ref": None}).set_index("dataset")
    # seed 0: +0.1, -0.1, 0; seed 1: +0.3, +0.1, +0.2 -> 4 higher, 1 lower, 1 equal (paired per seed and image)
    assert counts.loc["iou", ["wins", "losses", "ties", "n"]].tolist() == [4, 1, 1, 6]
    assert counts.loc["ber", ["wins", "losses", "ties", "n"]].tolist() == [1, 4, 1, 6]  # lower BER wins


def test_per_image_values_follow_the_report_definition(tmp_path):
    cfg = load_config(["sweep=smoke", f"runs_dir={tmp_path}", "methods=[adapter]", "datasets=[synth_polyp]"])
    run = run_configs(cfg)[0]
    rows = [{"name": f"img{i}", "sm": 0.1 * i, "infosam.sm": 0.5 + 0.1 * i} for i in range(3)]
    write_run(tmp_path, run, {"sm": 0.1}, per_image=rows)
    named, records = [(run, run_name(run))], {run_name(run): RunDir(tmp_path, run).read_metrics()}
    clean = per_image_frame(tmp_path, named, records, "clean")
    infosam = per_image_frame(tmp_path, named, records, "infosam")
    assert clean["value"].tolist() == pytest.approx([0.0, 0.1, 0.2])
    assert infosam["value"].tolist() == pytest.approx([0.5, 0.6, 0.7])
    assert per_image_frame(tmp_path, named, {}, "clean").empty  # an incomplete run has no values


class _Resize:
    @staticmethod
    def resized_shape(h: int, w: int) -> tuple[int, int]:
        return h, w


def test_qualitative_figure_of_large_images_stays_small_and_marks_runs_without_masks(tmp_path):
    cfg = load_config(["sweep=smoke", f"runs_dir={tmp_path / 'runs'}", "datasets=[synth_polyp]"])
    (zero, adapter) = run_configs(cfg)  # zero_shot keeps masks of 1200 x 900 images; adapter is an older run
    rng = np.random.default_rng(0)
    images = [{"image": rng.integers(0, 255, (900, 1200, 3), dtype=np.uint8)} for _ in range(2)]
    for run in (zero, adapter):
        write_run(cfg.runs_dir, run, {"sm": 0.5})
    keeper = MaskKeeper(2, images, _Resize(), use_box=True)
    batch = {
        "name": ["a", "b"],
        "size": torch.tensor([[900, 1200]] * 2),
        "box": torch.tensor([[100.0, 100.0, 700.0, 600.0]] * 2),
        "index": torch.arange(2),
    }
    gt = np.zeros((900, 1200), np.uint8)
    gt[200:500, 300:800] = 1
    for i in range(2):
        keeper(batch, i, np.where(gt > 0, 3.0, -3.0), gt)
    keeper.write(RunDir(cfg.runs_dir, zero).path)
    runs = [(r, run_name(r)) for r in (zero, adapter)]
    records = {n: RunDir(cfg.runs_dir, r).read_metrics() for r, n in runs}
    png, pdf = write_qualitative(cfg, runs, records, tmp_path)
    assert pdf.stat().st_size < 400_000 and png.stat().st_size < 400_000  # 4 full-size images would be ~10 MB
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    yellow = (rgb[..., 0] > 200) & (rgb[..., 1] > 200) & (rgb[..., 2] < 80)
    assert yellow.sum() > 50  # the box prompts are drawn
    assert im.width > im.height  # 2 image rows x 4 columns (image, GT, zero_shot, adapter's blank panel)
