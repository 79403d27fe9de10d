"""One training scored on several test sets: ``eval.also_test`` and the sweep's ``test_sets`` (Conv-LoRA's polyp
model tested on Kvasir and on CVC-612)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from bench.app.cli import validate_names
from bench.config import ConfigError
from bench.contracts.dataset import DATASETS
from bench.data.batches import PromptedDataset, eval_points_split
from bench.data.encoders import CachedEncoder
from bench.eval.evaluate import evaluate
from bench.runs.launcher import launch
from bench.runs.results import RunDir
from bench.runs.sweep import load_config, run_configs, run_count
from bench.use.trained import load_trained
from reports.report import build_report
from tests.tiny_runs import sweep


def test_convlora_table_trains_the_polyp_pool_once_and_tests_it_on_both_sets():
    cfg = load_config(["sweep=convlora_table"])
    runs = run_configs(cfg)
    assert {r.dataset for r in runs} == {"kvasir", "isic2017", "camo", "sbu", "leaf", "massachusetts_roads"}
    assert len(runs) == run_count(cfg) == 10 * 6 * 3
    assert all(r.eval.also_test == (["cvc_clinicdb"] if r.dataset == "kvasir" else []) for r in runs)
    # the test set's own training comes back when the mapping is emptied
    both = run_configs(load_config(["sweep=convlora_table", "test_sets.kvasir=[]"]))
    assert len(both) == 10 * 7 * 3 and all(not r.eval.also_test for r in both)
    # a protocol without the mapping trains every dataset (the InfoSAM polyp rows are two trainings)
    infosam = run_configs(load_config(["sweep=table1", "datasets=[kvasir,cvc_clinicdb]", "methods=[adapter]"]))
    assert {r.dataset for r in infosam} == {"kvasir", "cvc_clinicdb"}


def test_a_kvasir_only_sweep_keeps_its_run_names():
    """The mapping only acts when the test set is in the sweep: a kvasir-only convlora run is hashed as before."""
    alone = run_configs(load_config(["sweep=convlora_table", "datasets=[kvasir]", "methods=[lora]", "seeds=[0]"]))
    assert alone[0].eval.also_test == []


@pytest.mark.parametrize(
    "override, message",
    [
        ("test_sets={synth_polyp: [synth_polyp]}", "always tested on itself"),
        ("test_sets={synth_polyp: [synth_camo], synth_leaf: [synth_camo]}", "tested by both"),
        ("test_sets={synth_polyp: [synth_camo], synth_camo: [synth_leaf]}", "chain"),
    ],
)
def test_bad_test_sets_are_refused(tmp_path, override, message):
    cfg = sweep(tmp_path, "datasets=[synth_polyp,synth_camo,synth_leaf]", override)
    with pytest.raises(ConfigError, match=message):
        run_configs(cfg)


def test_a_test_set_of_another_task_is_refused_before_launch(tmp_path):
    cfg = sweep(tmp_path, "eval.also_test=[synth_shapes]")
    with pytest.raises(ConfigError, match="synth_shapes: it is a semantic dataset"):
        validate_names(cfg, weights=False)


def test_one_training_fills_both_columns_with_the_trained_models_scores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = sweep(
        tmp_path,
        "datasets=[synth_polyp,synth_camo]",
        "test_sets={synth_polyp: [synth_camo]}",
        "eval.select=last",
        "eval.keep_masks=0",
        "data.encoder_cache=false",  # the hand scoring below runs the encoder in fp32, not from the fp16 cache
    )
    runs = run_configs(cfg)
    assert [(r.dataset, r.eval.also_test) for r in runs] == [("synth_polyp", ["synth_camo"])]
    launch(cfg, runs)
    rd = RunDir(cfg.runs_dir, runs[0])
    record = json.loads(rd.metrics_file.read_text())
    scored = record["also_tested"]["synth_camo"]
    assert scored["report_metrics"] == ["sm", "em_adp", "wfm"] and scored["num_test_images"] == 4
    with (rd.path / "per_image.synth_camo.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4

    # the same trained weights scored on synth_camo's test split by hand give the recorded values
    trained = load_trained(rd.path)
    run = trained.run
    test_set = DATASETS.get("synth_camo")("test", run.data)
    n_pos, n_neg = eval_points_split(run.eval.num_points or test_set.info.eval_points)
    data = PromptedDataset(test_set, trained.model, run.seed, train=False, num_pos=n_pos, num_neg=n_neg)
    _, means = evaluate(trained.model, CachedEncoder(trained.model, None), data, True, torch.device("cpu"))
    for key, value in scored["metrics_by_definition"]["clean"].items():
        assert means["clean"][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert scored["metrics"]["sm"] != record["metrics"]["sm"]  # another test set, other values

    markdown = build_report(cfg)
    header = next(line for line in markdown.splitlines() if line.startswith("| method"))
    assert "synth_camo" in header and "synth_polyp" in header
    assert f"{scored['metrics']['sm'] * 100:.1f}" in markdown
    assert "1/1 runs complete" in markdown
