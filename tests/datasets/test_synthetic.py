"""Tests for the synthetic domains: contract, sizes, determinism, disjoint splits, the PNG cache."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.config import DataConfig, SynthConfig
from bench.contracts.dataset import DATASETS, DatasetError, dataset_info
from datasets.synthetic import GENERATOR_VERSION, SyntheticDataset

DOMAINS = ("synth_camo", "synth_polyp", "synth_leaf", "synth_road")
FAMILIES = {"synth_camo": "camouflage", "synth_polyp": "polyp", "synth_leaf": "leaf", "synth_road": "road"}
SMALL = dict(train_size=3, test_size=2, min_side=64, max_side=96)


def _cfg(cache: Path, **synth: int) -> DataConfig:
    return DataConfig(cache_dir=str(cache), synth=SynthConfig(**{**SMALL, **synth}))


def _arrays(ds: SyntheticDataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(s["image"], s["mask"]) for s in (ds[i] for i in range(len(ds)))]


def _mtimes(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in root.iterdir()}


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_contract_and_sizes(tmp_path: Path, domain: str) -> None:
    cfg = _cfg(tmp_path)
    shapes = []
    for split, count in (("train", 3), ("test", 2)):
        ds = DATASETS.get(domain)(split, cfg)
        assert len(ds) == count
        assert ds.info.family == FAMILIES[domain] and ds.info == dataset_info(domain)
        for i in range(len(ds)):
            s = ds[i]
            image, mask = s["image"], s["mask"]
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
            assert set(np.unique(mask)) == {0, 1}  # binary, non-empty, not everything
            assert image.std() > 10  # a real picture, not a flat colour
            assert 64 <= image.shape[0] <= 96 and 64 <= image.shape[1] <= 96
            assert s["split"] == split and s["name"].startswith(f"{domain}_{split}_")
            shapes.append(image.shape[:2])
        assert len({ds[i]["name"] for i in range(len(ds))}) == len(ds)
    assert len(set(shapes)) > 1, "every image has the same size"
    assert any(h != w for h, w in shapes), "no image has a non-square aspect"


def test_protocol_info() -> None:
    road = dataset_info("synth_road")
    assert (road.eval_prompt, road.eval_points, road.epochs, road.metrics) == ("points", 5, 20, ("iou", "dice"))
    for domain in ("synth_camo", "synth_polyp"):
        info = dataset_info(domain)
        assert (info.eval_prompt, info.epochs, info.metrics) == ("box", 10, ("sm", "em_adp", "wfm"))
    assert dataset_info("synth_leaf").metrics == ("iou", "dice")


@pytest.mark.parametrize("domain", DOMAINS)
def test_deterministic_and_splits_disjoint(tmp_path: Path, domain: str) -> None:
    first = {split: _arrays(DATASETS.get(domain)(split, _cfg(tmp_path / "a"))) for split in ("train", "test")}
    second = {split: _arrays(DATASETS.get(domain)(split, _cfg(tmp_path / "b"))) for split in ("train", "test")}
    for split in first:
        for (im1, m1), (im2, m2) in zip(first[split], second[split], strict=True):
            assert np.array_equal(im1, im2) and np.array_equal(m1, m2)
    for im_train, _ in first["train"]:
        for im_test, _ in first["test"]:
            assert im_train.shape != im_test.shape or not np.array_equal(im_train, im_test)
    images = [im for im, _ in first["train"]]
    assert not any(np.array_equal(a, b) for i, a in enumerate(images) for b in images[i + 1 :] if a.shape == b.shape)


def test_second_construction_reads_cache(tmp_path: Path) -> None:
    ds = DATASETS.get("synth_polyp")("train", _cfg(tmp_path))
    root = tmp_path / "synth" / "synth_polyp" / "train"
    assert ds.root == root
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["generator"] == GENERATOR_VERSION and manifest["synth"] == SMALL
    assert sorted(p.name for p in root.glob("*.png")) == sorted(
        f"synth_polyp_train_{i:04d}{suffix}.png" for i in range(3) for suffix in ("", "_mask")
    )
    before = _mtimes(root)
    # Mark a cached image: a dataset that reads the cache must return the marked pixels.
    path = root / "synth_polyp_train_0001.png"
    marked = cv2.imread(str(path))
    marked[:4, :4] = (0, 0, 255)  # BGR red
    cv2.imwrite(str(path), marked)
    before[path.name] = path.stat().st_mtime_ns
    again = DATASETS.get("synth_polyp")("train", _cfg(tmp_path))
    assert _mtimes(root) == before, "a second construction rewrote cached files"
    assert (again[1]["image"][:4, :4] == (255, 0, 0)).all()


def test_missing_file_is_regenerated(tmp_path: Path) -> None:
    ds = DATASETS.get("synth_leaf")("test", _cfg(tmp_path))
    mask_path = ds.root / "synth_leaf_test_0000_mask.png"
    expected = ds[0]["mask"]
    mask_path.unlink()
    again = DATASETS.get("synth_leaf")("test", _cfg(tmp_path))
    assert np.array_equal(again[0]["mask"], expected)


def test_changed_config_regenerates(tmp_path: Path) -> None:
    DATASETS.get("synth_camo")("train", _cfg(tmp_path))
    root = tmp_path / "synth" / "synth_camo" / "train"
    before = _mtimes(root)
    ds = DATASETS.get("synth_camo")("train", _cfg(tmp_path, min_side=100, max_side=120))
    after = _mtimes(root)
    assert all(after[name] != before[name] for name in before), "stale files were kept"
    assert json.loads((root / "manifest.json").read_text())["synth"]["min_side"] == 100
    assert all(100 <= side <= 120 for i in range(len(ds)) for side in ds[i]["image"].shape[:2])


def test_version_bump_regenerates(tmp_path: Path) -> None:
    DATASETS.get("synth_road")("test", _cfg(tmp_path))
    manifest_path = tmp_path / "synth" / "synth_road" / "test" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["generator"] = "synth-v0"
    manifest_path.write_text(json.dumps(manifest))
    DATASETS.get("synth_road")("test", _cfg(tmp_path))
    assert json.loads(manifest_path.read_text())["generator"] == GENERATOR_VERSION


@pytest.mark.parametrize("split", ["valid", "validation", ""])
def test_bad_split_raises(tmp_path: Path, split: str) -> None:
    with pytest.raises(DatasetError, match="valid splits: train, val, test"):
        DATASETS.get("synth_camo")(split, _cfg(tmp_path))


def test_bad_sizes_raise(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="min_side"):
        DATASETS.get("synth_camo")("train", _cfg(tmp_path, min_side=96, max_side=64))
    with pytest.raises(DatasetError, match="empty test split"):
        DATASETS.get("synth_camo")("test", _cfg(tmp_path, test_size=0))


def test_corrupt_image_names_file(tmp_path: Path) -> None:
    ds = DATASETS.get("synth_road")("test", _cfg(tmp_path))
    (ds.root / f"{ds.names[0]}.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=f"{ds.names[0]}.png: unreadable"):
        ds[0]


def test_corrupt_mask_names_file(tmp_path: Path) -> None:
    ds = DATASETS.get("synth_camo")("test", _cfg(tmp_path))
    mask_path = ds.root / "synth_camo_test_0000_mask.png"
    cv2.imwrite(str(mask_path), np.full((70, 70), 7, np.uint8))
    with pytest.raises(DatasetError, match="synth_camo_test_0000_mask.png"):
        DATASETS.get("synth_camo")("test", _cfg(tmp_path))[0]
