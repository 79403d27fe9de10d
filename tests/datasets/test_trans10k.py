"""Trans10K-v2 (datasets/trans10k.py) on a miniature copy in the public layout, checked by prepare and loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.app.cli import main
from bench.config import DataConfig
from bench.contracts.dataset import DATASETS, SPLITS, DatasetError, check_sample, dataset_info
from datasets._labels import voc_palette
from datasets._prepare import check_copy, dataset_status
from datasets._real import REAL_SPECS
from datasets.trans10k import CLASSES, fixture_labels, write_fixture

COUNTS = {"train": 4, "val": 2, "test": 3}
SIZE = (40, 56)


def _cfg(tmp_path: Path) -> DataConfig:
    return DataConfig(root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))


def _load(tmp_path: Path) -> dict[str, object]:
    return {split: DATASETS.get("trans10k")(split, _cfg(tmp_path)) for split in SPLITS}


def test_protocol_facts() -> None:
    info = dataset_info("trans10k")
    assert (info.task, info.family, info.ignore_index) == ("semantic", "transparent", 255)
    assert info.metrics == ("acc", "miou")
    assert info.classes == CLASSES and len(CLASSES) == 12 and CLASSES[0] == "background" and CLASSES[-1] == "box"
    assert info.eval_prompt == "none" and info.epochs == 30
    spec = REAL_SPECS["trans10k"]
    assert spec.published == {"train": 5000, "val": 1000, "test": 4428}
    assert spec.folders == ("Trans10K_cls12", "trans10k")


def test_fixture_is_the_public_layout_and_passes_prepare(tmp_path: Path, capsys) -> None:
    base = write_fixture(tmp_path / "data", COUNTS, SIZE)
    assert base == tmp_path / "data" / "Trans10K_cls12"
    for release, n in (("train", 4), ("validation", 2), ("test", 3)):
        images = sorted((base / release / "images").glob("*.jpg"))
        masks = sorted((base / release / "masks_12").glob("*_mask.png"))
        assert len(images) == len(masks) == n
        assert {p.stem + "_mask" for p in images} == {p.stem for p in masks}
        assert all(Image.open(m).mode == "P" for m in masks)
    report = check_copy("trans10k", base, tmp_path / "data")
    assert report.ok, report.text()
    text = report.text()
    assert "layout 'public'" in text and "val       2 pairs" in text and "classes (12, ignore index 255" in text
    assert main(["prepare", "dataset=trans10k", f"data.root={tmp_path / 'data'}"]) == 0
    assert "OK: ready to use" in capsys.readouterr().out
    assert dataset_status(tmp_path / "data")["trans10k"].startswith("present (public:")


def test_samples_validate_and_carry_the_palette_index(tmp_path: Path) -> None:
    write_fixture(tmp_path / "data", COUNTS, SIZE)
    sets = _load(tmp_path)
    assert {s: len(ds) for s, ds in sets.items()} == COUNTS
    names = {s: set(ds.names) for s, ds in sets.items()}
    assert not names["train"] & names["val"] and not names["train"] & names["test"]
    info = dataset_info("trans10k")
    seen: set[int] = set()
    for split, ds in sets.items():
        for i in range(len(ds)):
            sample = ds[i]
            check_sample(sample, sample["name"], info)
            assert sample["split"] == split and "mask" not in sample
            np.testing.assert_array_equal(sample["labels"], fixture_labels(sample["name"], SIZE))
            seen |= set(np.unique(sample["labels"]).tolist())
    assert 255 in seen and len(seen - {0, 255}) >= 4  # several classes and ignore pixels


def test_rgb_mask_coloured_with_the_voc_palette_decodes(tmp_path: Path) -> None:
    base = write_fixture(tmp_path / "data", COUNTS, SIZE)
    mask = sorted((base / "test" / "masks_12").iterdir())[0]
    labels = np.asarray(Image.open(mask))
    Image.fromarray(voc_palette()[labels]).save(mask)  # re-saved as RGB
    assert Image.open(mask).mode == "RGB"
    test = DATASETS.get("trans10k")("test", _cfg(tmp_path))
    np.testing.assert_array_equal(test[0]["labels"], labels)


def test_value_outside_the_classes_names_the_mask(tmp_path: Path) -> None:
    base = write_fixture(tmp_path / "data", COUNTS, SIZE)
    mask = sorted((base / "train" / "masks_12").iterdir())[1]
    im = Image.open(mask)
    arr = np.asarray(im).copy()
    arr[0, 0] = 12  # one past the last class, not the ignore index
    bad = Image.fromarray(arr)
    bad.putpalette(voc_palette().reshape(-1).tolist())
    bad.save(mask)
    with pytest.raises(DatasetError, match=rf"{mask.name}: label values \[12\] are neither a class \(0\.\.11\)"):
        DATASETS.get("trans10k")("train", _cfg(tmp_path))
    report = check_copy("trans10k", base)
    assert not report.ok and any(mask.name in p for p in report.problems)


def test_missing_mask_names_the_image(tmp_path: Path) -> None:
    base = write_fixture(tmp_path / "data", COUNTS, SIZE)
    mask = sorted((base / "validation" / "masks_12").iterdir())[0]
    mask.unlink()
    image = mask.name.replace("_mask.png", ".jpg")
    with pytest.raises(DatasetError, match=rf"{image}: image without mask \(expected .*_mask\.\*"):
        DATASETS.get("trans10k")("val", _cfg(tmp_path))


def test_lowercase_folder_name_is_accepted(tmp_path: Path) -> None:
    write_fixture(tmp_path / "data", {"train": 2, "val": 1, "test": 1}, SIZE, folder="trans10k")
    assert len(DATASETS.get("trans10k")("train", _cfg(tmp_path))) == 2


def test_download_says_where_to_get_it(tmp_path: Path, capsys) -> None:
    assert main(["download", "dataset=trans10k", f"data.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "github.com/xieenze/Trans2Seg" in err and "Trans10K_cls12" in err
    assert "prepare dataset=trans10k" in err
