"""Synthetic domains: contract, determinism, caching, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest

import datasets  # noqa: F401  (registration)
from bench.config import DataConfig, SynthConfig
from datasets._base import DATASETS, DatasetError, dataset_info

DOMAINS = ["synth_camo", "synth_polyp", "synth_leaf", "synth_road"]


def small(tmp_path, **kw) -> DataConfig:
    synth = SynthConfig(**{"train_size": 3, "test_size": 2, "min_side": 64, "max_side": 96, **kw})
    return DataConfig(cache_dir=str(tmp_path), synth=synth)


@pytest.mark.parametrize("domain", DOMAINS)
def test_contract_counts_and_sizes(tmp_path, domain):
    cfg = small(tmp_path)
    train, test = DATASETS.get(domain)("train", cfg), DATASETS.get(domain)("test", cfg)
    assert (len(train), len(test)) == (3, 2)
    shapes = set()
    for ds in (train, test):
        for i in range(len(ds)):
            s = ds[i]
            img, mask = s["image"], s["mask"]
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
            assert mask.dtype == np.uint8 and mask.shape == img.shape[:2]
            assert set(np.unique(mask)) <= {0, 1} and mask.sum() > 0
            assert img.std() > 5  # not a flat image
            assert 64 <= img.shape[0] <= 96 and 64 <= img.shape[1] <= 96
            assert s["split"] == ds.split
            shapes.add(img.shape[:2])
    assert len(shapes) > 1
    assert dataset_info(domain) == train.info


def test_deterministic_and_disjoint(tmp_path):
    a = DATASETS.get("synth_polyp")("train", small(tmp_path / "a"))
    b = DATASETS.get("synth_polyp")("train", small(tmp_path / "b"))
    test = DATASETS.get("synth_polyp")("test", small(tmp_path / "a"))
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
        np.testing.assert_array_equal(a[i]["mask"], b[i]["mask"])
    train_imgs = [a[i]["image"].tobytes() for i in range(len(a))]
    assert not any(test[j]["image"].tobytes() in train_imgs for j in range(len(test)))
    assert len({n for n in a.names} | set(test.names)) == len(a) + len(test)


def test_cache_reused_then_regenerated_on_change(tmp_path):
    cfg = small(tmp_path)
    ds = DATASETS.get("synth_leaf")("train", cfg)
    files = sorted(ds.root.glob("*.png"))
    mtimes = [os.stat(f).st_mtime_ns for f in files]
    DATASETS.get("synth_leaf")("train", cfg)
    assert [os.stat(f).st_mtime_ns for f in files] == mtimes
    changed = DATASETS.get("synth_leaf")("train", small(tmp_path, min_side=70, max_side=100))
    assert changed[0]["image"].shape[0] >= 70
    assert [os.stat(f).st_mtime_ns for f in files] != mtimes


def test_bad_split_and_sizes_raise(tmp_path):
    with pytest.raises(DatasetError, match="valid splits"):
        DATASETS.get("synth_camo")("validation", small(tmp_path))
    with pytest.raises(DatasetError, match="empty train split"):
        DATASETS.get("synth_camo")("train", small(tmp_path, train_size=0))
    with pytest.raises(DatasetError, match="min_side"):
        DATASETS.get("synth_camo")("train", small(tmp_path, min_side=100, max_side=90))


def test_corrupt_cached_file_names_the_file(tmp_path):
    ds = DATASETS.get("synth_road")("test", small(tmp_path))
    path = ds.root / f"{ds.names[0]}.png"
    path.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=ds.names[0]):
        ds[0]
