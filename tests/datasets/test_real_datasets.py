"""Real dataset loaders on miniature copies in every supported layout (issue 6).

Each (layout, dataset) case builds a tiny copy in tmp_path and checks counts, pairing (each image with
its own mask), the fixed and disjoint splits, the written split record, and that one training step and
one evaluation run on it. Then every kind of bad input must raise a DatasetError naming the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.config import DataConfig
from bench.contracts.dataset import DATASETS, SPLITS, DatasetError, dataset_info
from bench.data.images import binarize_mask, read_mask
from bench.eval.metrics import boundary_f1
from bench.runs.runner import execute_run
from bench.runs.sweep import load_config, run_configs
from datasets._prepare import check_copy, dataset_status
from datasets._real import REAL_SPECS
from datasets._splits import draw_validation, split_order
from tests.datasets.real_fixtures import FIXTURES, cases, expected_mask, sample_colour, write_image, write_mask

CASES = cases()
CASE_IDS = [f"{fx}-{ds}" for fx, ds in CASES]


def _cfg(tmp_path: Path, cache: str = "cache") -> DataConfig:
    return DataConfig(root=str(tmp_path / "data"), cache_dir=str(tmp_path / cache))


def _build(tmp_path: Path, fixture: str):
    return FIXTURES[fixture](tmp_path / "data")


def _load_all(name: str, cfg: DataConfig) -> dict[str, object]:
    return {split: DATASETS.get(name)(split, cfg) for split in SPLITS}


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() + str(p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------ every dataset, every layout
def test_every_real_dataset_has_cases() -> None:
    # the binary datasets are exercised here; semantic ones have their own module (tests/datasets/test_trans10k.py)
    binary = {name for name, spec in REAL_SPECS.items() if spec.info.task == "binary"}
    assert {ds for _, ds in CASES} == binary
    assert set(REAL_SPECS) - binary == {"trans10k"}
    # every layout of every dataset is exercised by some fixture
    for name in binary:
        spec = REAL_SPECS[name]
        tested = {fx.split("_", 1)[1] for fx, ds in CASES if ds == name}
        layouts = {lay.name.replace("convlora_", "") for lay in spec.layouts}
        assert layouts == tested, name


@pytest.mark.parametrize(("fixture", "name"), CASES, ids=CASE_IDS)
def test_counts_pairing_and_splits(tmp_path: Path, fixture: str, name: str) -> None:
    expect = _build(tmp_path, fixture)[name]
    cfg = _cfg(tmp_path)
    sets = _load_all(name, cfg)
    got = {split: set(ds.names) for split, ds in sets.items()}
    assert {ds.layout for ds in sets.values()} == {expect.layout}
    assert got["test"] == expect.test
    if expect.val_drawn:
        assert got["train"] | got["val"] == expect.pool
        fraction = REAL_SPECS[name].val_fraction
        assert len(got["val"]) == max(1, round(fraction * len(expect.pool)))
        assert got["val"] == draw_validation(sorted(expect.pool), fraction)
    else:
        assert (got["train"], got["val"]) == (expect.train, expect.val)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not got[a] & got[b], (a, b)
    for split, ds in sets.items():
        assert len(ds) == len(got[split])
        for i in range(len(ds)):
            s = ds[i]
            assert s["split"] == split
            image, mask = s["image"], s["mask"]
            assert image.dtype == np.uint8 and image.shape[2] == 3 and mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 1}
            want = expected_mask(s["name"])
            assert mask.shape == want.shape
            assert np.mean(mask != want) < 0.02, f"{s['name']}: mask of another sample?"
            background = image[expected_mask(s["name"]) == 0].astype(int)
            assert np.abs(np.median(background, axis=0) - sample_colour(s["name"])).max() <= 6, s["name"]
    # the split is written down, and an independent construction (fresh cache) draws the same one
    record = json.loads((tmp_path / "cache" / "splits" / f"{name}__{expect.layout}.json").read_text())
    assert {k: set(v) for k, v in record["splits"].items()} == got
    assert record["val_drawn"] == expect.val_drawn
    again = _load_all(name, _cfg(tmp_path, cache="cache2"))
    assert {split: ds.names for split, ds in again.items()} == {split: ds.names for split, ds in sets.items()}


@pytest.mark.parametrize(("fixture", "name"), CASES, ids=CASE_IDS)
def test_one_training_step_and_evaluation(tmp_path: Path, fixture: str, name: str) -> None:
    expect = _build(tmp_path, fixture)[name]
    cfg = load_config(
        [
            "sweep=smoke",
            "backbone.name=tiny_sam",
            "launcher=inline",
            "methods=[decoder_only]",
            f"datasets=[{name}]",
            "train.epochs=1",
            "train.max_steps_per_epoch=1",
            f"runs_dir={tmp_path / 'runs'}",
            f"data.root={tmp_path / 'data'}",
            f"data.cache_dir={tmp_path / 'cache'}",
        ]
    )
    (run,) = run_configs(cfg)
    record = execute_run(run, cfg.runs_dir)
    assert record["num_test_images"] == len(expect.test)
    n_train = len(expect.train)
    if expect.val_drawn:
        n_train = len(expect.pool) - max(1, round(REAL_SPECS[name].val_fraction * len(expect.pool)))
    assert record["num_train_images"] == n_train
    log = (tmp_path / "runs" / record["run"] / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step") and [row.split(",")[:2] for row in log[1:]] == [["1", "1"]]
    assert record["report_metrics"] == list(dataset_info(name).metrics)
    assert all(np.isfinite(record["metrics"][k]) for k in dataset_info(name).metrics)
    assert record["eval_prompt"] == dataset_info(name).eval_prompt


# ------------------------------------------------------------------------------ protocol facts
def test_protocol_info() -> None:
    road = dataset_info("massachusetts_roads")
    assert (road.eval_prompt, road.eval_points, road.epochs, road.metrics) == ("points", 5, 20, ("iou", "dice"))
    for name in ("kvasir", "cvc_clinicdb", "camo", "cod10k", "chameleon"):
        assert dataset_info(name).metrics == ("sm", "em_adp", "wfm") and dataset_info(name).epochs == 10
    assert dataset_info("isic2017").metrics == ("iou", "dice")
    assert dataset_info("leaf").metrics == ("iou", "dice")
    assert dataset_info("sbu").metrics == ("ber",)
    published = {n: s.published for n, s in REAL_SPECS.items()}
    assert published["kvasir"] == {"train": 1450, "test": 100} and published["cvc_clinicdb"]["test"] == 62
    assert published["isic2017"] == {"train": 2000, "val": 150, "test": 600}
    assert published["massachusetts_roads"] == {"train": 1107, "val": 13, "test": 48}
    assert published["leaf"] == {"train": 498, "test": 90}
    assert published["camo"]["test"] == 250 and published["cod10k"]["test"] == 2026
    assert published["chameleon"]["test"] == 76 and published["camo"]["train"] == 4040
    assert {n: s.val_fraction for n, s in REAL_SPECS.items() if n in ("kvasir", "camo", "leaf")} == {
        "kvasir": 0.2,
        "camo": 0.1,
        "leaf": 0.2,
    }


def test_split_order_is_a_fixed_function_of_the_names() -> None:
    # hard-coded: changing the split rule would silently change every published split
    assert split_order(["a", "b", "c", "d", "e"]) == split_order(["e", "d", "c", "b", "a"])
    six = [f"img{i}" for i in range(6)]
    assert split_order(six) == ["img0", "img5", "img4", "img2", "img1", "img3"]
    assert split_order(six) == sorted(six, key=lambda n: hashlib.sha256(f"samfit-split-v1|{n}".encode()).hexdigest())
    assert draw_validation([f"img{i}" for i in range(10)], 0.2) == set(split_order([f"img{i}" for i in range(10)])[:2])
    assert draw_validation(["only"], 0.2) == set()


# ------------------------------------------------------------------------------ mask binarisation
def test_binarize_rules() -> None:
    jpeg_like = np.array([[0, 3, 9, 250], [255, 247, 1, 2]], np.uint8)
    assert binarize_mask(jpeg_like, 255, "m").tolist() == [[0, 0, 0, 1], [1, 1, 0, 0]]
    assert binarize_mask(np.array([[0, 1], [1, 0]], np.uint8), 255, "m").tolist() == [[0, 1], [1, 0]]
    sixteen = np.array([[0, 65535], [40000, 100]], np.int64)
    assert binarize_mask(sixteen, 65535, "m").tolist() == [[0, 1], [1, 0]]
    photo = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    with pytest.raises(DatasetError, match="photo.png: not a binary mask"):
        binarize_mask(photo, 255, "photo.png")
    with pytest.raises(DatasetError, match="labels.png: mask values 0..38"):
        binarize_mask(np.array([[0, 38], [38, 0]], np.uint8), 255, "labels.png")
    assert binarize_mask(np.array([[0, 12], [0, 0]], np.uint8), 255, "m").tolist() == [[0, 0], [0, 0]]  # JPEG noise


def test_jpeg_mask_with_near_values_reads_as_binary(tmp_path: Path) -> None:
    path = tmp_path / "m.jpg"
    write_mask(path, "x")
    raw = np.asarray(Image.open(path).convert("L"))
    assert not np.isin(raw, (0, 255)).all()  # the fixture really has JPEG values in between
    assert np.mean(read_mask(path) != expected_mask("x")) < 0.02
    rgb = tmp_path / "rgb.png"  # a 3-channel 0/255 mask (some releases store masks as RGB)
    Image.fromarray(np.repeat(expected_mask("x")[..., None] * 255, 3, axis=2).astype(np.uint8)).save(rgb)
    assert np.array_equal(read_mask(rgb), expected_mask("x"))


# ------------------------------------------------------------------------------------- bad inputs
def _kvasir(tmp_path: Path, split: str = "train"):
    return DATASETS.get("kvasir")(split, _cfg(tmp_path))


def test_missing_root_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"data/polyp: dataset 'kvasir' not found"):
        _kvasir(tmp_path)
    (tmp_path / "data" / "polyp" / "something").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"polyp: no supported layout of 'kvasir'.*TrainDataset/image"):
        _kvasir(tmp_path)


def test_image_without_mask(tmp_path: Path) -> None:
    polyp = tmp_path / "data" / "polyp"
    _build(tmp_path, "polyp_pranet")
    write_image(polyp / "TrainDataset/image/lonely.png", "lonely")
    with pytest.raises(DatasetError, match=r"TrainDataset/image/lonely.png: image without mask"):
        _kvasir(tmp_path)


def test_mask_without_image(tmp_path: Path) -> None:
    _build(tmp_path, "polyp_pranet")
    write_mask(tmp_path / "data/polyp/TestDataset/Kvasir/masks/orphan.png", "orphan")
    with pytest.raises(DatasetError, match=r"Kvasir/masks/orphan.png: mask without image"):
        _kvasir(tmp_path, "test")


def test_mask_of_different_size(tmp_path: Path) -> None:
    _build(tmp_path, "polyp_pranet")
    write_mask(tmp_path / "data/polyp/TrainDataset/mask/kv_001.png", "kv_001", size=(50, 50))
    with pytest.raises(DatasetError, match=r"TrainDataset/mask/kv_001.png: mask size 50x50 differs from image"):
        _kvasir(tmp_path)


@pytest.mark.parametrize("kind", ["garbage", "truncated_png", "truncated_jpeg"])
def test_unreadable_or_truncated_file(tmp_path: Path, kind: str) -> None:
    _build(tmp_path, "isic_public")
    data = tmp_path / "data/isic2017/ISIC-2017_Training_Data"
    path = data / "ISIC_train0002.jpg"
    if kind == "garbage":
        path.write_bytes(b"this is not an image")
    elif kind == "truncated_jpeg":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    else:
        mask = tmp_path / "data/isic2017/ISIC-2017_Training_Part1_GroundTruth/ISIC_train0002_segmentation.png"
        mask.write_bytes(mask.read_bytes()[:-30])
        path = mask
    with pytest.raises(DatasetError, match=rf"{path.name}: unreadable or truncated"):
        DATASETS.get("isic2017")("train", _cfg(tmp_path))


def test_non_mask_file(tmp_path: Path) -> None:
    _build(tmp_path, "roads_public")
    label = tmp_path / "data/massachusetts_roads/tiff/test_labels/1test00015_15.tif"
    h, w = np.asarray(Image.open(label)).shape[:2]
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(label)  # a photo saved as the label
    with pytest.raises(DatasetError, match=r"1test00015_15.tif: not a binary mask"):
        DATASETS.get("massachusetts_roads")("test", _cfg(tmp_path))


def test_empty_split(tmp_path: Path) -> None:
    _build(tmp_path, "sbu_public")
    for p in (tmp_path / "data/sbu/SBU-Test").rglob("*.*"):
        p.unlink()
    with pytest.raises(DatasetError, match=r"sbu: empty test split"):
        DATASETS.get("sbu")("train", _cfg(tmp_path))  # a broken test split stops the training split too


def test_csv_problems_name_the_file(tmp_path: Path) -> None:
    _build(tmp_path, "leaf_csv")
    base = tmp_path / "data/leaf_disease_segmentation"
    (base / "masks/tr_002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"images/tr_002.jpg: image without mask \(.*masks/tr_002.jpg listed in"):
        DATASETS.get("leaf")("train", _cfg(tmp_path))
    (base / "test.csv").write_text("img,mask\na.jpg,b.png\n")
    with pytest.raises(DatasetError, match=r"test.csv: CSV needs the columns image,label"):
        DATASETS.get("leaf")("test", _cfg(tmp_path))


def test_duplicate_stems_and_unknown_split(tmp_path: Path) -> None:
    _build(tmp_path, "sbu_public")
    write_image(tmp_path / "data/sbu/SBU-Test/ShadowImages/test_000.png", "test_000")
    with pytest.raises(DatasetError, match=r"ShadowImages/test_00\d.(png|jpg): same stem as test_000"):
        DATASETS.get("sbu")("test", _cfg(tmp_path))
    with pytest.raises(DatasetError, match="valid splits: train, val, test"):
        DATASETS.get("sbu")("validation", _cfg(tmp_path))


def test_verification_happens_once_and_catches_later_damage(tmp_path: Path) -> None:
    _build(tmp_path, "leaf_public")
    DATASETS.get("leaf")("test", _cfg(tmp_path))
    stamps = list((tmp_path / "cache" / "verified").glob("leaf__test__*.ok"))
    assert len(stamps) == 1
    image = tmp_path / "data/leaf/orig_data/valid_images/leaft_001.jpg"
    image.write_bytes(image.read_bytes()[:100])  # new size and mtime: the stamp no longer applies
    with pytest.raises(DatasetError, match="leaft_001.jpg: unreadable or truncated"):
        DATASETS.get("leaf")("test", _cfg(tmp_path))


# ----------------------------------------------------------------------------------------- prepare
def test_prepare_reports_counts_and_never_writes(tmp_path: Path) -> None:
    _build(tmp_path, "cod_public")
    src = tmp_path / "data" / "cod"
    before = _snapshot(src)
    report = check_copy("camo", src, tmp_path / "data")
    assert report.ok, report.text()
    text = report.text()
    assert "layout 'public'" in text and "test      2 pairs" in text
    assert "training pool (train + val) has 7 images; the paper reports 4040" in text
    # what a run trains on per protocol: the drawn validation split is held back only where it is read
    assert "all 7 pairs of the training pool, no validation split, with data.hold_out_val=false" in text
    assert _snapshot(src) == before


def test_prepare_lists_every_problem_with_file_names(tmp_path: Path) -> None:
    _build(tmp_path, "polyp_pranet")
    src = tmp_path / "data" / "polyp"
    write_image(src / "TrainDataset/image/lonely.png", "lonely")
    (src / "TestDataset/Kvasir/images/kvt_001.png").write_bytes(b"broken")
    before = _snapshot(src)
    report = check_copy("kvasir", src)
    assert not report.ok
    text = report.text()
    assert "lonely.png: image without mask" in text
    assert "kvt_001.png: unreadable or truncated" in text
    assert len(report.problems) == 2 and "NOT READY: 2 problem(s)" in text
    assert _snapshot(src) == before


def test_prepare_via_cli_and_list_status(tmp_path: Path, capsys) -> None:
    from bench.app.cli import main

    _build(tmp_path, "isic_csv")
    root = tmp_path / "data"
    status = dataset_status(root)
    assert status["isic2017"].startswith("present (convlora_csv")
    assert status["kvasir"].startswith("missing") and status["synth_polyp"] == "generated"
    assert main(["prepare", "dataset=isic2017", f"data.root={root}"]) == 0
    assert "OK: ready to use" in capsys.readouterr().out
    (root / "isic2017/images/va_000.jpg").write_bytes(b"")
    assert main(["prepare", "dataset=isic2017", f"src={root / 'isic2017'}"]) == 2
    assert "va_000.jpg: unreadable or truncated" in capsys.readouterr().err
    assert main(["prepare", "dataset=synth_leaf"]) == 2
    assert "nothing to prepare" in capsys.readouterr().err
    assert main(["list", f"data.root={root}"]) == 0
    out = capsys.readouterr().out
    assert "isic2017             present (convlora_csv" in out and "kvasir               missing" in out


# ---------------------------------------------------------------------------------- boundary F1
def test_boundary_f1_known_diagonal_offset() -> None:
    """A square shifted by (1, 1): every boundary pixel is 1 or sqrt(2) px from the other boundary."""
    gt = np.zeros((20, 20), bool)
    gt[5:13, 5:13] = True  # 8x8 square: 28 boundary pixels
    pred = np.roll(gt, (1, 1), axis=(0, 1))
    # tolerance 0: the two rings cross at (6, 12) and (12, 6) only -> P = R = 2/28 -> F1 = 1/14
    assert boundary_f1(pred, gt, 0) == pytest.approx(2 / 28)
    # tolerance 1: only the two far corners ((13, 13) in pred, (5, 5) in gt) are sqrt(2) away -> 27/28
    assert boundary_f1(pred, gt, 1) == pytest.approx(27 / 28)
    assert boundary_f1(pred, gt, 2) == 1.0 and boundary_f1(pred, gt, 3) == 1.0
