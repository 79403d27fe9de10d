"""The ``coco`` dataset: COCO-style instance JSONs on a generated fixture, checked by ``prepare``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

import datasets.coco as coco_mod
from bench.app.cli import main
from bench.config import CocoDataConfig, ConfigError, DataConfig
from bench.contracts.dataset import DATASETS, DatasetError, dataset_info
from datasets.coco import ENCODINGS, decode_segmentation, encode_rect, write_fixture


def _data(tmp_path, root, **kw) -> DataConfig:
    return DataConfig(cache_dir=str(tmp_path / "cache"), coco=CocoDataConfig(root=str(root), **kw))


def _build(tmp_path, root, split="train", **kw):
    return DATASETS.get("coco")(split, _data(tmp_path, root, **kw))


def test_fixture_round_trips_masks_categories_and_empty_images(tmp_path, caplog):
    root = tmp_path / "c"
    expected = write_fixture(root, counts=(1, 3, 0, 2))
    with caplog.at_level(logging.INFO, logger="datasets.coco"):
        train = _build(tmp_path, root, "train", epochs=4, eval_prompt="points")
    assert "skipped 1 crowd annotation" in caplog.text and train.data.crowd == 1
    assert train.info.classes == ("bar", "square")  # category ids 3, 7 sorted (listed 7, 3)
    assert (train.info.task, train.info.epochs, train.info.eval_prompt) == ("instances", 4, "points")
    assert len(_build(tmp_path, root, "val")) == 0  # data.coco.val unset
    for split in ("train", "test"):
        ds = _build(tmp_path, root, split)
        assert len(ds) == 4
        counts = []
        for i in range(len(ds)):
            sample = ds[i]
            objects = expected[split][sample["name"]]
            assert sample["split"] == split and sample["image"].shape == (96, 128, 3)
            assert len(sample["instances"]) == len(objects)
            for inst, (category, mask) in zip(sample["instances"], objects):
                assert inst["category"] == category
                np.testing.assert_array_equal(inst["mask"], mask)
            counts.append(len(sample["instances"]))
        assert counts == [1, 3, 0, 2]
        assert ds[2]["instances"] == []
    cats = {c for objs in expected["train"].values() for c, _ in objs}
    assert cats == {0, 1}
    # the drawn category colour lies under each mask (the image belongs to its annotations)
    first = train[1]
    later = np.zeros(first["image"].shape[:2], bool)  # objects are drawn in order: later ones cover earlier ones
    for inst in reversed(first["instances"]):
        colour = (220, 40, 40) if inst["category"] == 0 else (40, 200, 60)
        visible = inst["mask"].astype(bool) & ~later
        assert visible.any() and (first["image"][visible] == colour).all()
        later |= inst["mask"].astype(bool)


def test_polygon_and_rle_give_the_expected_mask(tmp_path):
    size = (20, 30)
    box = (4, 5, 11, 17)  # x0, y0, x1, y1: rows 5..16, cols 4..10
    want = np.zeros(size, np.uint8)
    want[5:17, 4:11] = 1
    for encoding in ENCODINGS:
        mask = decode_segmentation(encode_rect(box, size, encoding), *size, where=encoding)
        assert mask.dtype == np.uint8 and mask.shape == size
        np.testing.assert_array_equal(mask, want, err_msg=encoding)
    two = decode_segmentation([[0, 0, 2, 0, 2, 2, 0, 2], [10, 10, 12, 10, 12, 13, 10, 13]], *size, where="two")
    assert two.sum() == 4 + 6  # two polygon rings are merged into one object
    root = tmp_path / "c"
    write_fixture(root)
    segs = [a["segmentation"] for a in json.loads((root / "annotations" / "train.json").read_text())["annotations"]]
    kinds = {"polygon" if isinstance(s, list) else type(s["counts"]).__name__ for s in segs}
    assert kinds == {"polygon", "list", "str"}  # polygons, uncompressed and compressed RLE


def test_masks_are_decoded_lazily(tmp_path, monkeypatch):
    root = tmp_path / "c"
    write_fixture(root)

    def boom(*a, **k):
        raise AssertionError("decoded at construction")

    monkeypatch.setattr(coco_mod, "decode_segmentation", boom)
    ds = _build(tmp_path, root, "train")
    with pytest.raises(AssertionError, match="decoded at construction"):
        ds[0]


def _edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _first_ann(data):
    return next(a for a in data["annotations"] if not a["iscrowd"])


def _set(key, value):
    return lambda data: _first_ann(data).__setitem__(key, value)


def _dup_name(data):
    data["images"].append({"id": 99, "file_name": "train_000.jpg", "height": 96, "width": 128})


def _rename_cat(data):
    data["categories"][0]["name"] = "other"


EMPTY_RLE = {"size": [96, 128], "counts": [96 * 128]}

CONSTRUCTION_ERRORS = [
    ("unknown image", "train.json", _set("image_id", 999), r"train\.json: annotation id 1 .*unknown image id 999"),
    ("unknown category", "train.json", _set("category_id", 42), r"train\.json: annotation id 1.*category id 42"),
    ("duplicate name", "train.json", _dup_name, r"train\.json: images .*share the sample name 'train_000'"),
    ("other categories", "test.json", _rename_cat, r"test\.json: categories .* differ from .*train\.json"),
]


@pytest.mark.parametrize("what,file,change,message", CONSTRUCTION_ERRORS, ids=[c[0] for c in CONSTRUCTION_ERRORS])
def test_broken_json_names_the_file(tmp_path, what, file, change, message):
    root = tmp_path / "c"
    write_fixture(root)
    _edit(root / "annotations" / file, change)
    with pytest.raises(DatasetError, match=message):
        _build(tmp_path, root, file.removesuffix(".json"))


def test_missing_and_malformed_json_and_images(tmp_path):
    root = tmp_path / "c"
    write_fixture(root)
    (root / "annotations" / "test.json").unlink()
    with pytest.raises(DatasetError, match=r"test\.json: COCO annotation file not found"):
        _build(tmp_path, root, "test")
    with pytest.raises(DatasetError, match=r"nope\.json: COCO annotation file not found"):
        _build(tmp_path, root, "val", val="annotations/nope.json")
    (root / "annotations" / "train.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"train\.json: malformed JSON"):
        _build(tmp_path, root, "train")
    (root / "annotations" / "train.json").write_text('{"images": []}')
    with pytest.raises(DatasetError, match=r"train\.json: no 'annotations' list"):
        _build(tmp_path, root, "train")
    root2 = tmp_path / "d"
    write_fixture(root2)
    (root2 / "images" / "train_001.png").unlink()
    missing = r"images/train_001\.png: image file not found \(image id 2 of .*train\.json\)"
    with pytest.raises(DatasetError, match=missing):
        _build(tmp_path, root2, "train")
    with pytest.raises(ConfigError, match="data.coco.root"):
        DATASETS.get("coco")("train", DataConfig())


def test_wrong_image_size_and_empty_mask_raise_on_reading(tmp_path):
    root = tmp_path / "c"
    write_fixture(root)
    Image.new("RGB", (128, 95)).save(root / "images" / "train_000.png")
    ds = _build(tmp_path, root, "train")  # construction does not decode
    with pytest.raises(DatasetError, match=r"train_000\.png: image size 128x95 differs from .*train\.json's"):
        ds[0]
    root2 = tmp_path / "d"
    write_fixture(root2)
    _edit(root2 / "annotations" / "train.json", _set("segmentation", EMPTY_RLE))
    ds = _build(tmp_path, root2, "train")
    with pytest.raises(DatasetError, match=r"train\.json: annotation id 1 \(image train_000\.png\).*empty mask"):
        ds[0]
    _edit(root2 / "annotations" / "train.json", _set("segmentation", {"size": [96, 128], "counts": [5, 5]}))
    with pytest.raises(DatasetError, match=r"train\.json: annotation id 1 .*RLE counts sum to 10"):
        _build(tmp_path, root2, "train")[0]


def test_prepare_checks_the_coco_dataset(tmp_path, capsys):
    root = tmp_path / "c"
    write_fixture(root)
    assert main(["prepare", "dataset=coco", f"data.coco.root={root}"]) == 0
    out = capsys.readouterr().out
    assert "classes (2): bar, square" in out and "train     4 images, 6 objects" in out and "OK: ready to use" in out
    (root / "images" / "test_003.png").write_bytes(b"not a png")
    assert main(["prepare", "dataset=coco", f"src={root}"]) == 2
    assert "test_003.png: unreadable" in capsys.readouterr().err
    assert dataset_info("coco").task == "instances"
