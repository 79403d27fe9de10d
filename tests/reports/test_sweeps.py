"""The figure/table sweeps of issue 8: overrides, Table 6's relation-module hand-over, and the
λ-grid command end to end on the tiny SAM."""

from __future__ import annotations

import pytest
import torch

from bench.config import row_label
from bench.runs.launcher import launch
from bench.runs.results import RunDir
from bench.runs.sweep import load_config, run_configs
from reports.names import report_name
from reports.report import build_report

TINY = [
    "backbone=tiny_sam",
    "launcher=inline",
    "train.epochs=1",
    "data.synth.train_size=8",
    "data.synth.test_size=4",
    "data.synth.min_side=64",
    "data.synth.max_side=96",
]


def test_lambda_grid_is_fig6_and_list_overrides_apply():
    grid, fig6 = load_config(["sweep=lambda_grid"]), load_config(["sweep=fig6"])
    assert grid.grid == fig6.grid and grid.datasets == fig6.datasets == ["kvasir", "leaf", "massachusetts_roads"]
    assert grid.seeds == [0, 1, 2] and len(run_configs(grid)) == 16 * 3 * 3
    small = load_config(["sweep=lambda_grid", "datasets=[synth_polyp]", "seeds=[0,1]"])
    runs = run_configs(small)
    assert len(runs) == 16 * 2 and {r.dataset for r in runs} == {"synth_polyp"} and {r.seed for r in runs} == {0, 1}
    assert {(r.distill["lambda1"], r.distill["lambda2"]) for r in runs} >= {(1.0, 0.5), (0.1, 2.0)}


@pytest.mark.parametrize("sweep", ["table6", "table7", "table8", "fig6", "fig7", "fig8_9"])
def test_sweeps_default_to_three_seeds_and_take_list_overrides(sweep):
    cfg = load_config([f"sweep={sweep}"])
    assert cfg.seeds == [0, 1, 2]
    one = load_config([f"sweep={sweep}", "seeds=[0]", f"datasets=[{cfg.datasets[0]}]"])
    assert {r.seed for r in run_configs(one)} == {0} and len(run_configs(one)) * 3 * len(cfg.datasets) == len(
        run_configs(cfg)
    )


def test_fig8_9_exports_relation_maps():
    runs = run_configs(load_config(["sweep=fig8_9"]))
    assert {row_label(r) for r in runs} == {"adapter+infosam [w/o RT]", "adapter+infosam [with RT]"}
    assert all(r.distill["export_epochs"] == [1, 5, 10] for r in runs)


def test_table6_loads_the_relation_module_of_the_same_seed_under_runs_dir(tmp_path):
    cfg = load_config(["sweep=table6", f"runs_dir={tmp_path}"])
    loading = [r for r in run_configs(cfg) if r.distill.get("relation_ckpt")]
    assert len(loading) == 2 * 2 * 3
    for run in loading:
        source = "synth_leaf" if "from Leaf" in run.variant else "synth_polyp"
        assert run.distill["relation_ckpt"] == f"{tmp_path}/_relation/{source}_s{run.seed}.pt"
        assert run.distill["relation_frozen"] is True


def test_table6_two_passes_train_infosam_t_with_the_source_relation_module(tmp_path):
    cfg = load_config(
        ["sweep=table6", f"runs_dir={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'cache'}"]
        + TINY
        + ["datasets=[synth_leaf]", "seeds=[0]"]
    )
    first = launch(cfg)  # the source trains; the InfoSAM-T rows fail: no relation module yet
    assert [o.run.variant for o in first if not o.error] == [""]
    assert all("_relation/synth_leaf_s0.pt" in o.error or "_relation/synth_polyp_s0.pt" in o.error for o in first[1:])
    build_report(cfg)  # publishes the source's relation module
    published = tmp_path / "runs" / "_relation" / "synth_leaf_s0.pt"
    assert published.is_file()
    second = {o.run.variant: o for o in launch(cfg)}
    assert second["InfoSAM-T (RM from Leaf)"].error is None
    assert "synth_polyp_s0.pt" in second["InfoSAM-T (RM from Kvasir)"].error  # no Kvasir source in this sweep
    target = next(r for r in run_configs(cfg) if r.variant == "InfoSAM-T (RM from Leaf)")
    saved = torch.load(RunDir(cfg.runs_dir, target).path / "relation.pt", weights_only=True)
    source = torch.load(published, weights_only=True)
    assert saved.keys() == source.keys()
    assert all(torch.equal(saved[k], source[k]) for k in saved)  # frozen: trained on, unchanged
    md = build_report(cfg)
    assert "adapter+infosam [InfoSAM-T (RM from Leaf)]" in md and "2/3 runs complete" in md


def test_lambda_grid_command_end_to_end_writes_the_heatmap(tmp_path, capsys):
    from bench.app.cli import main

    args = ["sweep=lambda_grid", "datasets=[synth_polyp]", "seeds=[0,1]", f"runs_dir={tmp_path / 'runs'}"]
    args += [f"data.cache_dir={tmp_path / 'cache'}", "grid={distill.lambda1: [0.5, 1.0], distill.lambda2: [0.5, 1.0]}"]
    assert main(["run", *args, *TINY]) == 0
    out = capsys.readouterr().out
    assert "8/8 runs complete" in out and "adapter+infosam [distill.lambda1=0.5,distill.lambda2=1.0]" in out
    stem = report_name(load_config(args + TINY))  # datasets and seeds overridden: a report name of its own
    assert stem.startswith("lambda_grid-")
    for suffix in ("png", "pdf", "md", "tex", "csv"):
        name = f"{stem}_heatmap" if suffix in ("png", "pdf") else stem
        assert (tmp_path / "runs" / "_reports" / f"{name}.{suffix}").stat().st_size > 500
