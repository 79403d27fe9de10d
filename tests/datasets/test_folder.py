"""The ``folder`` dataset: own images + masks (or a CSV) on generated fixtures, checked by ``prepare``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.app.cli import main
from bench.config import ConfigError, DataConfig, FolderDataConfig
from bench.contracts.dataset import DATASETS, DatasetError
from datasets.folder import scan_folder
from tests.datasets.real_fixtures import csv_layout, expected_mask, folder_split, names


def _data(tmp_path, **kw) -> DataConfig:
    return DataConfig(cache_dir=str(tmp_path / "cache"), folder=FolderDataConfig(**kw))


def test_images_and_masks_split_by_fraction_and_load(tmp_path):
    root = tmp_path / "mine"
    stems = names("s", 10)
    folder_split(root, "images", "masks", stems, ".jpg", ".png", suffix="_mask")
    cfg = _data(tmp_path, root=str(root), mask_suffix="_mask", test_fraction=0.3, val_fraction=0.25)
    train, val, test = (DATASETS.get("folder")(s, cfg) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (5, 2, 3)  # ceil(0.3·10) test, round(0.25·7) val
    assert {*(p.name for p in train.pairs), *(p.name for p in val.pairs), *(p.name for p in test.pairs)} == set(stems)
    sample = test[0]
    np.testing.assert_array_equal(sample["mask"], expected_mask(sample["name"]))
    assert test.info.metrics == ("iou", "dice")


def test_csv_with_split_files_and_chosen_metrics(tmp_path):
    root = tmp_path / "mine"
    stems = names("c", 6)
    csv_layout(root, {"all.csv": stems})
    (root / "test.txt").write_text("c000\nc001.jpg\n")
    (root / "train.txt").write_text("\n".join(stems[2:]) + "\n")
    cfg = _data(
        tmp_path, root=str(root), csv="all.csv", test_list="test.txt", train_list="train.txt", metrics=["sm", "ber"]
    )
    test = DATASETS.get("folder")("test", cfg)
    assert sorted(p.name for p in test.pairs) == ["c000", "c001"] and test.info.metrics == ("sm", "ber")
    assert len(DATASETS.get("folder")("train", cfg)) == 4


def test_bad_copies_name_the_problem(tmp_path):
    root = tmp_path / "mine"
    folder_split(root, "images", "masks", names("s", 4), ".png", ".png")
    (root / "masks" / "s000.png").unlink()
    with pytest.raises(DatasetError, match="s000.png: image without mask"):
        DATASETS.get("folder")("train", _data(tmp_path, root=str(root)))
    with pytest.raises(DatasetError, match="found images/, missing labels/"):
        scan_folder(FolderDataConfig(root=str(root), masks="labels"))
    with pytest.raises(ConfigError, match="data.folder.root"):
        scan_folder(FolderDataConfig())
    with pytest.raises(ConfigError, match="unknown \\['acc'\\]"):
        scan_folder(FolderDataConfig(root=str(root), metrics=["acc"]))
    (root / "t.txt").write_text("nope\n")
    result = scan_folder(FolderDataConfig(root=str(root), masks="masks", test_list="t.txt"))
    assert any("'nope' is not a sample" in p for p in result.problems)


def test_prepare_checks_the_folder_dataset(tmp_path, capsys):
    root = tmp_path / "mine"
    folder_split(root, "images", "masks", names("s", 5), ".png", ".png")
    assert main(["prepare", "dataset=folder", f"data.folder.root={root}"]) == 0
    out = capsys.readouterr().out
    assert "layout 'folder'" in out and "OK: ready to use" in out
    (root / "masks" / "s001.png").write_bytes(b"not a png")
    assert main(["prepare", "dataset=folder", f"src={root}"]) == 2
    assert "s001.png: unreadable" in capsys.readouterr().err


def test_folder_dataset_runs_in_a_sweep(tmp_path):
    root = tmp_path / "mine"
    folder_split(root, "images", "masks", names("s", 8), ".png", ".png")
    runs = tmp_path / "runs"
    args = ["sweep=smoke", "methods=[zero_shot]", "datasets=[folder]", f"data.folder.root={root}", f"runs_dir={runs}"]
    assert main(args + ["launcher=inline", f"data.cache_dir={tmp_path / 'c'}", "data.folder.metrics=[iou,ber]"]) == 0
    (record,) = [json.loads(p.read_text()) for p in runs.glob("folder__*/metrics.json")]
    assert record["report_metrics"] == ["iou", "ber"] and record["num_test_images"] == 2


def test_partial_real_layout_says_what_was_found_and_what_is_missing(tmp_path):
    from datasets._layouts import locate
    from datasets.polyp import KVASIR

    base = tmp_path / "polyp"
    folder_split(base, "Kvasir-SEG/images", "Kvasir-SEG/masks", names("k", 2), ".jpg", ".jpg")
    with pytest.raises(DatasetError) as err:
        locate(KVASIR, base)
    text = str(err.value)
    assert "incomplete public layout" in text and "found Kvasir-SEG/images + Kvasir-SEG/masks" in text
    assert "missing CVC-ClinicDB/Original" in text
    assert text.count("Kvasir-SEG/images + Kvasir-SEG/masks") == 1  # train and test read it: named once
