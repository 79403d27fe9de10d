"""synth_shapes (datasets/shapes.py): the semantic synthetic domain's contract, determinism and cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.config import DataConfig, SynthConfig
from bench.contracts.dataset import DATASETS, DatasetError, check_sample, dataset_info
from datasets.shapes import CLASSES, VERSION
from datasets.synthetic import add_domain, generate_sample

SMALL = dict(train_size=6, val_size=2, test_size=4, min_side=64, max_side=96)


def _cfg(cache: Path, **synth: int) -> DataConfig:
    return DataConfig(cache_dir=str(cache), synth=SynthConfig(**{**SMALL, **synth}))


def _arrays(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(s["image"], s["labels"]) for s in (ds[i] for i in range(len(ds)))]


def test_protocol_facts() -> None:
    info = dataset_info("synth_shapes")
    assert (info.task, info.family, info.metrics, info.epochs) == ("semantic", "shapes", ("acc", "miou"), 10)
    assert info.classes == CLASSES == ("background", "disc", "square", "triangle", "ring")


def test_samples_follow_the_contract_and_sizes(tmp_path: Path) -> None:
    info = dataset_info("synth_shapes")
    for split, n in (("train", 6), ("val", 2), ("test", 4)):
        ds = DATASETS.get("synth_shapes")(split, _cfg(tmp_path))
        assert len(ds) == n and ds.info == info
        for i in range(n):
            s = ds[i]
            check_sample(s, s["name"], info)
            assert "mask" not in s and s["split"] == split
            h, w = s["labels"].shape
            assert 64 <= h <= 96 and 64 <= w <= 96
    root = tmp_path / "synth" / "synth_shapes" / "train"
    assert sorted(p.name for p in root.glob("*_labels.png"))[0] == "synth_shapes_train_0000_labels.png"
    assert json.loads((root / "manifest.json").read_text())["generator"] == VERSION


def test_every_class_appears_in_the_train_split(tmp_path: Path) -> None:
    ds = DATASETS.get("synth_shapes")("train", _cfg(tmp_path, train_size=4))
    present = set()
    for _, labels in _arrays(ds):
        present |= set(np.unique(labels).tolist())
    assert set(range(len(CLASSES))) <= present
    assert present <= set(range(len(CLASSES))) | {255}
    # sample i always shows class 1 + i % 4 (drawn last, so it is never hidden)
    for i, (_, labels) in enumerate(_arrays(ds)):
        assert (labels == 1 + i % 4).sum() > 20


def test_objects_overlap_and_images_follow_the_labels() -> None:
    image, labels = generate_sample("synth_shapes", "train", 0, SynthConfig(**SMALL))
    assert image.dtype == np.uint8 and image.shape == labels.shape + (3,)
    # each class's pixels have their own colour: the mean colours of two present classes differ clearly
    means = [image[labels == c].mean(axis=0) for c in np.unique(labels) if c not in (0, 255)]
    assert len(means) >= 2 and max(np.abs(a - b).max() for a in means for b in means) > 40


def test_deterministic_across_constructions_and_splits_differ(tmp_path: Path) -> None:
    a = _arrays(DATASETS.get("synth_shapes")("train", _cfg(tmp_path / "a")))
    b = _arrays(DATASETS.get("synth_shapes")("train", _cfg(tmp_path / "b")))
    for (ia, la), (ib, lb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    cached = _arrays(DATASETS.get("synth_shapes")("train", _cfg(tmp_path / "a")))  # read back from the cache
    np.testing.assert_array_equal(cached[0][1], a[0][1])
    test = _arrays(DATASETS.get("synth_shapes")("test", _cfg(tmp_path / "a")))
    train_images = {img.tobytes() for img, _ in a}
    assert not any(img.tobytes() in train_images for img, _ in test)


def test_corrupt_cached_label_map_names_the_file(tmp_path: Path) -> None:
    import cv2

    ds = DATASETS.get("synth_shapes")("test", _cfg(tmp_path))
    path = ds.root / "synth_shapes_test_0001_labels.png"
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    labels[0, 0] = 7  # not a class, not the ignore index
    cv2.imwrite(str(path), labels)
    with pytest.raises(DatasetError, match=r"synth_shapes_test_0001_labels\.png: label values \[7\]"):
        ds[1]


def test_add_domain_refuses_a_taken_name() -> None:
    with pytest.raises(ValueError, match="already defined"):
        add_domain("synth_shapes", lambda rng, h, w, i: (None, None), dataset_info("synth_shapes"), "x")
