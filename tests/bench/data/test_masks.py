"""``eval.keep_masks``: a run keeps the masks of its first test images by name, and nothing else changes."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch
from PIL import Image

from bench.contracts.dataset import DATASETS
from bench.data.masks import MaskKeeper, read_masks
from bench.data.prompts import mask_box
from bench.runs.results import RunDir
from bench.runs.runner import execute_run
from bench.runs.sweep import run_hash
from tests.tiny_runs import single_run, sweep


def test_kept_masks_are_the_scored_ones_and_leave_results_unchanged(tmp_path):
    cfg_keep = sweep(tmp_path, "eval.keep_masks=2", runs="keep")
    cfg_none = sweep(tmp_path, "eval.keep_masks=0", runs="none")
    run_keep, run_none = single_run(cfg_keep), single_run(cfg_none)
    assert run_hash(run_keep) == run_hash(run_none)  # an unhashed key: the same run
    record_keep = execute_run(run_keep, cfg_keep.runs_dir)
    record_none = execute_run(run_none, cfg_none.runs_dir)
    assert record_keep["metrics_by_definition"] == record_none["metrics_by_definition"]
    path_keep, path_none = RunDir(cfg_keep.runs_dir, run_keep).path, RunDir(cfg_none.runs_dir, run_none).path
    assert read_masks(path_none) is None and not (path_none / "masks").exists()

    index = read_masks(path_keep)
    test_set = DATASETS.get(run_keep.dataset)("test", run_keep.data)
    names = sorted(test_set[i]["name"] for i in range(len(test_set)))
    assert [e["name"] for e in index["images"]] == names[:2]
    assert index["prompt"] == "box" and index["frame"] == "original"
    with (path_keep / "per_image.csv").open(newline="") as fh:
        iou = {row["name"]: float(row["iou"]) for row in csv.DictReader(fh)}
    samples = {s["name"]: s for s in (test_set[i] for i in range(len(test_set)))}
    for entry in index["images"]:
        sample = samples[entry["name"]]
        gt = np.asarray(Image.open(entry["gt"])) > 127
        pred = np.asarray(Image.open(entry["pred"])) > 127
        assert np.array_equal(gt, sample["mask"] > 0)
        assert np.asarray(Image.open(entry["image"])).shape == sample["image"].shape
        inter, union = (gt & pred).sum(), (gt | pred).sum()
        # the kept prediction is the one IoU scored (threshold 0.5 on the sigmoid)
        assert np.isclose(inter / union if union else 1.0, iou[entry["name"]], atol=1e-9)
        # the exact test box (eval.box_jitter=0), mapped back from the model input to the image's pixels
        np.testing.assert_allclose(entry["box"], mask_box(sample["mask"]), atol=0.6)
    assert json.loads((path_keep / "masks" / "masks.json").read_text())["images"][0]["pred"].endswith("_pred.png")


class _Resize:
    @staticmethod
    def resized_shape(h: int, w: int) -> tuple[int, int]:
        return h // 2, w // 2


def _batch(names: list[str], size: int = 8) -> dict:
    n = len(names)
    return {
        "name": names,
        "size": torch.tensor([[size, size]] * n),
        "box": torch.tensor([[1.0, 1.0, 3.0, 2.0]] * n),
        "points": torch.zeros(n, 1, 2),
        "labels": torch.ones(n, 1, dtype=torch.long),
        "index": torch.arange(n),
    }


def test_keeper_holds_the_first_names_in_any_arrival_order_and_the_last_evaluation():
    keeper = MaskKeeper(2, dataset=None, backbone=_Resize(), use_box=True)
    batch = _batch(["d", "b", "c", "a"])
    gt = np.zeros((8, 8), np.uint8)
    for i in range(4):
        keeper(batch, i, np.full((8, 8), -1.0), gt)
    assert sorted(keeper.kept) == ["a", "b"]
    keeper(batch, 1, np.full((8, 8), 1.0), gt)  # "b" scored again (a later checkpoint) replaces the first
    assert keeper.kept["b"].pred.all() and not keeper.kept["a"].pred.any()
    assert keeper.kept["a"].box == [2.0, 2.0, 6.0, 4.0]  # input frame (half size) -> the 8 x 8 original


def test_kept_masks_in_the_model_input_frame(tmp_path):
    cfg = sweep(tmp_path, "eval.keep_masks=1", "eval.resolution=input")
    run = single_run(cfg)
    execute_run(run, cfg.runs_dir)
    path = RunDir(cfg.runs_dir, run).path
    index = read_masks(path)
    assert index["frame"] == "input" and len(index["images"]) == 1
    entry = index["images"][0]
    gt, pred = (np.asarray(Image.open(entry[k])) > 127 for k in ("gt", "pred"))
    image = np.asarray(Image.open(entry["image"]))
    assert image.shape[:2] == gt.shape == pred.shape and max(gt.shape) == 64  # tiny_sam's 64-px input frame
    with (path / "per_image.csv").open(newline="") as fh:
        iou = {row["name"]: float(row["iou"]) for row in csv.DictReader(fh)}
    union = (gt | pred).sum()
    assert np.isclose((gt & pred).sum() / union if union else 1.0, iou[entry["name"]], atol=1e-9)
    np.testing.assert_allclose(entry["box"], mask_box(gt), atol=1.0)  # the box in that frame
