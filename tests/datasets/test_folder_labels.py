"""The folder dataset with label maps (``data.folder.classes``): a semantic task read from your own PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.app.cli import main
from bench.config import ConfigError, DataConfig, FolderDataConfig
from bench.contracts.dataset import DATASETS, DatasetError, check_sample
from datasets._labels import voc_palette
from datasets.folder import folder_info

CLASSES = ("background", "cat", "dog")


def _labels(i: int) -> np.ndarray:
    labels = np.zeros((20, 24), np.uint8)
    labels[2:10, 3 + i : 12 + i] = 1 + i % 2
    labels[12:18, 4:20] = 2 - i % 2
    labels[0, :] = 255  # unlabelled row
    return labels


def _write(root: Path, n: int = 6, palette: bool = True) -> list[str]:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    stems = [f"f{i:02d}" for i in range(n)]
    for i, stem in enumerate(stems):
        labels = _labels(i)
        Image.fromarray(voc_palette()[labels] // 2 + 60).save(root / "images" / f"{stem}.png")
        mask = Image.fromarray(labels)
        if palette:
            mask.putpalette(voc_palette().reshape(-1).tolist())
        mask.save(root / "masks" / f"{stem}.png")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n\n")
    (root / "test.txt").write_text("f00\n")  # every other sample is in the training pool
    return stems


def _data(tmp_path: Path, **kw) -> DataConfig:
    return DataConfig(cache_dir=str(tmp_path / "cache"), folder=FolderDataConfig(**kw))


@pytest.mark.parametrize("palette", [True, False], ids=["P", "L"])
def test_label_map_folder_with_a_classes_file(tmp_path: Path, palette: bool) -> None:
    root = tmp_path / "mine"
    _write(root, palette=palette)
    cfg = _data(tmp_path, root=str(root), classes="classes.txt", test_fraction=0.34)
    train, test = DATASETS.get("folder")("train", cfg), DATASETS.get("folder")("test", cfg)
    assert (len(train), len(test)) == (3, 3)
    info = test.info
    assert (info.task, info.classes, info.ignore_index, info.metrics) == ("semantic", CLASSES, 255, ("acc", "miou"))
    for ds in (train, test):
        for k in range(len(ds)):
            sample = ds[k]
            check_sample(sample, sample["name"], info)
            np.testing.assert_array_equal(sample["labels"], _labels(int(sample["name"][1:])))


def test_classes_as_an_absolute_path_or_a_list(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    _write(root)
    absolute = folder_info(FolderDataConfig(root=str(root), classes=str(root / "classes.txt")))
    listed = folder_info(FolderDataConfig(root=str(root), classes=list(CLASSES)))  # type: ignore[arg-type]
    assert absolute.classes == listed.classes == CLASSES
    assert folder_info(FolderDataConfig(root=str(root))).task == "binary"


def test_value_outside_the_classes_names_the_file(tmp_path: Path, capsys) -> None:
    root = tmp_path / "mine"
    _write(root)
    bad = np.asarray(Image.open(root / "masks" / "f03.png")).copy()
    bad[5, 5] = 3  # a fourth class of a three-class folder
    Image.fromarray(bad).save(root / "masks" / "f03.png")
    args = ["prepare", "dataset=folder", f"data.folder.root={root}", "data.folder.classes=classes.txt"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "f03.png: label values [3] are neither a class (0..2) nor the ignore index 255" in err
    assert "NOT READY: 1 problem(s)" in err
    cfg = _data(tmp_path, root=str(root), classes="classes.txt", test_list="test.txt")
    with pytest.raises(DatasetError, match=r"f03\.png: label values \[3\]"):
        DATASETS.get("folder")("train", cfg)


def test_prepare_reports_the_classes(tmp_path: Path, capsys) -> None:
    root = tmp_path / "mine"
    _write(root)
    assert main(["prepare", "dataset=folder", f"data.folder.root={root}", "data.folder.classes=classes.txt"]) == 0
    out = capsys.readouterr().out
    assert "classes (3, ignore index 255; images with each): background 6, cat 6, dog 6" in out
    assert "metrics: acc, miou" in out and "OK: ready to use" in out


def test_binary_metrics_are_refused_for_a_label_map_folder(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    _write(root)
    with pytest.raises(ConfigError, match=r"\['iou', 'ber'\] not reported for a label-map folder.*valid: acc, miou"):
        folder_info(FolderDataConfig(root=str(root), classes="classes.txt", metrics=["iou", "ber"]))
    chosen = folder_info(FolderDataConfig(root=str(root), classes="classes.txt", metrics=["miou"]))
    assert chosen.metrics == ("miou",)


def test_bad_classes_files(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    _write(root)
    with pytest.raises(DatasetError, match=r"nope\.txt: classes file \(data\.folder\.classes\) not found"):
        folder_info(FolderDataConfig(root=str(root), classes="nope.txt"))
    (root / "one.txt").write_text("background\n")
    with pytest.raises(ConfigError, match="at least two class names"):
        folder_info(FolderDataConfig(root=str(root), classes="one.txt"))
    (root / "twice.txt").write_text("background\ncat\ncat\n")
    with pytest.raises(ConfigError, match="listed twice: cat"):
        folder_info(FolderDataConfig(root=str(root), classes="twice.txt"))
    with pytest.raises(ConfigError, match="ignore_index=2 is a class id"):
        folder_info(FolderDataConfig(root=str(root), classes="classes.txt", ignore_index=2))


def test_rgb_masks_are_not_label_maps(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    _write(root)
    Image.fromarray(voc_palette()[_labels(1)]).save(root / "masks" / "f01.png")
    cfg = _data(tmp_path, root=str(root), classes="classes.txt", test_list="test.txt")
    with pytest.raises(DatasetError, match=r"f01\.png: a label map must be a palette \(P\) or grayscale \(L\)"):
        DATASETS.get("folder")("train", cfg)
