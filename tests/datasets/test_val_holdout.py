"""The validation split is held back only where the protocol reads it (issue 28, item 6).

``data.hold_out_val`` (default true): a real or folder dataset whose layout ships no validation files draws
its ``val`` split from the training pool. ``protocol=infosam`` (``eval.select=test_last``, never reads ``val``)
sets it false on every dataset without its own validation split: the train split is the whole pool and
``val`` is empty, as the public InfoSAM code trains on every training image. Shipped validation files (ISIC's
``Validation`` folders, ``val.csv``) and the synthetic domains' own ``val`` are unchanged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from bench.config import DataConfig, FolderDataConfig
from bench.config.digest import dump_yaml
from bench.contracts.dataset import DATASETS, SPLITS
from bench.runs.runner import execute_run
from bench.runs.sweep import load_config, run_configs, run_hash
from datasets._real import REAL_SPECS
from datasets._splits import draw_validation
from tests.datasets.real_fixtures import FIXTURES, cases, names, write_pair

log = logging.getLogger(__name__)

CASES = cases()
CASE_IDS = [f"{fx}-{ds}" for fx, ds in CASES]


def _cfg(tmp_path: Path, hold_out_val: bool, cache: str = "cache") -> DataConfig:
    return DataConfig(root=str(tmp_path / "data"), cache_dir=str(tmp_path / cache), hold_out_val=hold_out_val)


def _splits(name: str, cfg: DataConfig) -> dict[str, set[str]]:
    return {split: set(DATASETS.get(name)(split, cfg).names) for split in SPLITS}


def _run(protocol: str, dataset: str, *extra: str):
    (run,) = run_configs(load_config([f"protocol={protocol}", f"datasets=[{dataset}]", "methods=[adapter]",
                                      "seeds=[0]", *extra]))  # fmt: skip
    return run


# ------------------------------------------------------------------------------ the config key
def test_infosam_sets_no_hold_out_on_real_datasets_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert DataConfig().hold_out_val is True
    for dataset in ("kvasir", "camo", "leaf", "sbu", "isic2017", "folder"):
        run = _run("infosam", dataset)
        assert run.data.hold_out_val is False, dataset
        assert "hold_out_val: false" in dump_yaml(run)  # visible in the run's config.yaml
        assert _run("clean", dataset).data.hold_out_val is True, dataset
    # the synthetic domains make their own validation split: the key is left at its default, names unchanged
    for dataset in ("synth_camo", "synth_polyp", "synth_leaf", "synth_road", "synth_shapes"):
        assert _run("infosam", dataset).data.hold_out_val is True, dataset
    # the command line still decides
    assert _run("infosam", "kvasir", "data.hold_out_val=true").data.hold_out_val is True
    assert _run("clean", "kvasir", "data.hold_out_val=false").data.hold_out_val is False


def test_the_key_is_hashed_only_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = _run("clean", "kvasir")
    off = replace(run, data=replace(run.data, hold_out_val=False))
    assert run_hash(off) != run_hash(run)
    # at its default the key leaves the digest as before the key existed
    from bench.config.digest import config_digest, to_dict

    data = to_dict(run)
    without = to_dict(run)
    del without["data"]["hold_out_val"]
    assert config_digest(data) == config_digest(without)


# ------------------------------------------------------------------------------ every layout
@pytest.mark.parametrize(("fixture", "name"), CASES, ids=CASE_IDS)
def test_train_split_keeps_the_pool_without_hold_out(tmp_path: Path, fixture: str, name: str) -> None:
    expect = FIXTURES[fixture](tmp_path / "data")[name]
    held = _splits(name, _cfg(tmp_path, True))
    whole = _splits(name, _cfg(tmp_path, False, cache="cache_whole"))
    assert whole["test"] == held["test"] == expect.test
    if expect.val_drawn:
        fraction = REAL_SPECS[name].val_fraction
        assert held["val"] == draw_validation(sorted(expect.pool), fraction) and held["val"]
        assert held["train"] == expect.pool - held["val"]
        assert (whole["train"], whole["val"]) == (expect.pool, set())
        record = tmp_path / "cache_whole" / "splits" / f"{name}__{expect.layout}__no_val.json"
        data = json.loads(record.read_text())
        assert (data["val_drawn"], data["hold_out_val"], data["counts"]["val"]) == (False, False, 0)
        assert data["counts"]["train"] == len(expect.pool)
        # the held-out record keeps its own file: the two splits of one copy never overwrite each other
        assert json.loads((tmp_path / "cache" / "splits" / f"{name}__{expect.layout}.json").read_text())["val_drawn"]
    else:  # the layout ships validation files: kept as they are
        assert whole == held
        assert (whole["train"], whole["val"]) == (expect.train, expect.val)
    log.info("%s %s: clean train/val %d/%d, infosam train/val %d/%d", fixture, name,
             len(held["train"]), len(held["val"]), len(whole["train"]), len(whole["val"]))  # fmt: skip


def test_infosam_run_trains_on_the_whole_pool(tmp_path: Path) -> None:
    expect = FIXTURES["leaf_public"](tmp_path / "data")["leaf"]
    cfg = load_config(
        [
            "sweep=smoke",
            "protocol=infosam",
            "backbone.name=tiny_sam",
            "launcher=inline",
            "methods=[decoder_only]",
            "datasets=[leaf]",
            "train.epochs=1",
            "train.max_steps_per_epoch=1",
            f"runs_dir={tmp_path / 'runs'}",
            f"data.root={tmp_path / 'data'}",
            f"data.cache_dir={tmp_path / 'cache'}",
        ]
    )
    (run,) = run_configs(cfg)
    record = execute_run(run, cfg.runs_dir)
    assert expect.val_drawn and record["num_train_images"] == len(expect.pool)
    saved = (tmp_path / "runs" / record["run"] / "config.yaml").read_text()
    assert "hold_out_val: false" in saved


# ------------------------------------------------------------------------------ the folder dataset
def _folder(tmp_path: Path, n: int) -> Path:
    root = tmp_path / "mine"
    for s in names("s", n):
        write_pair(root / "images" / f"{s}.png", root / "masks" / f"{s}.png", s)
    return root


def _folder_splits(root: Path, cache: Path, hold_out_val: bool, val_list: str | None = None) -> dict[str, set[str]]:
    folder = FolderDataConfig(root=str(root), val_fraction=0.2, val_list=val_list)
    cfg = DataConfig(cache_dir=str(cache), hold_out_val=hold_out_val, folder=folder)
    return {split: {p.name for p in DATASETS.get("folder")(split, cfg).pairs} for split in SPLITS}


def test_folder_dataset_without_hold_out(tmp_path: Path) -> None:
    root = _folder(tmp_path, 10)
    held = _folder_splits(root, tmp_path / "c1", True)
    whole = _folder_splits(root, tmp_path / "c2", False)
    pool = set(names("s", 10)) - held["test"]
    assert held["test"] == whole["test"] and len(held["test"]) == 2  # test_fraction 0.2
    assert len(held["val"]) == 2 and held["train"] == pool - held["val"]  # val_fraction 0.2 of 8
    assert (whole["train"], whole["val"]) == (pool, set())
    # a val_list is the user's own validation split: kept either way
    own = sorted(pool)[:3]
    (root / "val.txt").write_text("".join(f"{s}\n" for s in own))
    shipped = _folder_splits(root, tmp_path / "c3", False, val_list="val.txt")
    assert shipped == _folder_splits(root, tmp_path / "c4", True, val_list="val.txt")
    assert (shipped["train"], shipped["val"]) == (pool - set(own), set(own))
