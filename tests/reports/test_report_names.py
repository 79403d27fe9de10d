"""A report says what its runs did: its own name when overrides change the sweep's runs (:mod:`reports.names`),
and a caption naming the runs that reported another checkpoint than the protocol's (:mod:`reports.selections`)."""

from __future__ import annotations

from pathlib import Path

from bench.runs.launcher import launch
from bench.runs.sweep import load_config
from reports.names import report_name
from reports.report import build_report
from tests.datasets.real_fixtures import folder_split, names
from tests.tiny_runs import sweep


def test_folder_without_validation_images_is_named_and_captioned_by_its_runs(tmp_path):
    root = tmp_path / "mine"
    folder_split(root, "images", "masks", names("s", 6), ".png", ".png")  # no validation images
    cfg = sweep(
        tmp_path,
        "~report.name",  # tiny_runs names its reports smoke; this test checks the name of their own
        "datasets=[synth_polyp,folder]",
        f"data.folder.root={root}",
        "seeds=[0,1]",
        "train.epochs=1",
        "eval.select=val_best",
        "eval.select_epochs=1",
        "data.hold_out_val=false",
    )
    assert not any(o.error for o in launch(cfg))
    markdown = build_report(cfg)
    name = report_name(cfg)
    assert name.startswith("smoke-") and name == report_name(sweep(tmp_path, *_same(root)))
    out = tmp_path / "runs" / "_reports"
    assert not (out / "smoke.md").exists()  # the smoke sweep's own report is left alone
    said = (
        "checkpoint: best of the last 1 epochs on the validation split (2 runs); last epoch (no validation split)"
        " for 2 runs: folder adapter s0, folder adapter s1;"
    )
    assert markdown.startswith(f"### {name}: ") and said in markdown
    assert said in (out / f"{name}.md").read_text()
    assert said in (out / f"{name}.tex").read_text()
    assert said in (out / f"{name}.html").read_text()
    assert (out / f"{name}_qualitative.png").is_file() and (out / f"{name}_wins.csv").is_file()


def _same(root: Path) -> list[str]:
    """The overrides of the test above in another order, with launcher and report keys added."""
    return [
        "~report.name",
        "report.out_dir=-",
        "data.hold_out_val=false",
        "eval.select_epochs=1",
        "eval.select=val_best",
        "train.epochs=1",
        "seeds=[0,1]",
        f"data.folder.root={root}",
        "datasets=[synth_polyp,folder]",
        "launcher.max_parallel=3",
    ]


def test_names_follow_the_run_list():
    assert report_name(load_config([])) == "demo"  # the default run writes runs/_reports/demo.*
    assert report_name(load_config(["sweep=demo"])) == "demo"
    for unchanged in (["launcher=inline"], ["launcher.max_parallel=1", "device=cpu"], ["report.out_dir=-"]):
        assert report_name(load_config(unchanged)) == "demo", unchanged
    folder = report_name(load_config(["datasets=[synth_polyp]"]))
    seeds = report_name(load_config(["seeds=[0,1]"]))
    assert folder.startswith("demo-") and seeds.startswith("demo-") and folder != seeds
    assert report_name(load_config(["datasets=[synth_polyp]", "launcher=inline"])) == folder  # same runs, same name
    assert report_name(load_config(["train.lr=0.5"])) not in ("demo", folder, seeds)
    assert report_name(load_config(["datasets=[synth_polyp]", "report.name=mine"])) == "mine"


def test_the_paper_comparison_keeps_the_sweep_file_name():
    cfg = load_config(["sweep=table1", "datasets=[synth_polyp]"])
    assert cfg.sweep == "table1" and report_name(cfg).startswith("table1-")
