"""Miniature copies of the real datasets in their public layouts and in the Conv-LoRA CSV layout.

Every sample encodes its name: the image is a flat colour derived from the name with a brighter disc,
the mask is that disc (0/255), so a test can check that an image was paired with its own mask.
Masks are written as JPEG where the public release does so (Kvasir-SEG, the CSV fixtures), giving
values near, not at, 0 and 255. Each fixture also drops files that are not samples into the folders.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image


def _h(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def sample_size(name: str) -> tuple[int, int]:
    h = _h(name)
    return 24 + h % 17, 28 + (h >> 8) % 21  # (H, W), aspect varies


def sample_colour(name: str) -> np.ndarray:
    h = _h(name)
    return np.array([40 + h % 90, 40 + (h >> 8) % 90, 40 + (h >> 16) % 90], np.uint8)


def expected_mask(name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    hh, ww = size or sample_size(name)
    h = _h(name)
    cy, cx, r = hh / 2 + (h % 5) - 2, ww / 2 + ((h >> 4) % 7) - 3, 6 + (h >> 12) % 4
    yy, xx = np.mgrid[0:hh, 0:ww]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)


def write_image(path: Path, name: str, size: tuple[int, int] | None = None) -> None:
    mask = expected_mask(name, size)
    img = np.broadcast_to(sample_colour(name), mask.shape + (3,)).copy()
    img[mask == 1] = np.minimum(img[mask == 1].astype(int) + 100, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(img).save(path, **options)


def write_mask(path: Path, name: str, size: tuple[int, int] | None = None) -> None:
    arr = expected_mask(name, size) * 255
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(arr.astype(np.uint8)).save(path, quality=75)
    else:
        Image.fromarray(arr.astype(np.uint8)).save(path)


def write_pair(image: Path, mask: Path, name: str) -> None:
    write_image(image, name)
    write_mask(mask, name)


def junk(folder: Path, *names: str) -> None:
    """Files that are not samples (metadata, OS litter)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_text("not a sample\n")


@dataclass
class Expect:
    """What a fixture holds for one dataset: the training pool (or explicit train/val) and the test names."""

    layout: str
    test: set[str]
    pool: set[str] = field(default_factory=set)  # train + val when val is drawn
    train: set[str] = field(default_factory=set)  # explicit, when the layout ships val
    val: set[str] = field(default_factory=set)

    @property
    def val_drawn(self) -> bool:
        return not self.train


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


def folder_split(base: Path, img_dir: str, mask_dir: str, stems: list[str], img_ext: str, mask_ext: str, suffix=""):
    for s in stems:
        write_pair(base / img_dir / f"{s}{img_ext}", base / mask_dir / f"{s}{suffix}{mask_ext}", s)


def csv_layout(base: Path, files: dict[str, list[str]]) -> None:
    """Conv-LoRA archive: ``images/*.jpg``, ``masks/*.jpg`` (JPEG masks) and one CSV per split."""
    base.mkdir(parents=True, exist_ok=True)
    for csv_name, stems in files.items():
        with (base / csv_name).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "label"])
            for s in stems:
                write_pair(base / "images" / f"{s}.jpg", base / "masks" / f"{s}.jpg", s)
                w.writerow([f"images/{s}.jpg", f"masks/{s}.jpg"])


# ------------------------------------------------------------------------------------------ polyp
def polyp_pranet(root: Path) -> dict[str, Expect]:
    base = root / "polyp"
    pool = names("kv_", 6) + names("cvc_", 5)
    folder_split(base, "TrainDataset/image", "TrainDataset/mask", pool, ".png", ".png")
    kv, cvc = names("kvt_", 2), names("cvct_", 3)
    folder_split(base, "TestDataset/Kvasir/images", "TestDataset/Kvasir/masks", kv, ".png", ".png")
    folder_split(base, "TestDataset/CVC-ClinicDB/images", "TestDataset/CVC-ClinicDB/masks", cvc, ".png", ".png")
    folder_split(
        base, "TestDataset/ETIS-LaribPolypDB/images", "TestDataset/ETIS-LaribPolypDB/masks", ["e1"], ".png", ".png"
    )
    junk(base / "TrainDataset/image", ".DS_Store", "Thumbs.db")
    return {
        "kvasir": Expect("pranet", pool=set(pool), test=set(kv)),
        "cvc_clinicdb": Expect("pranet", pool=set(pool), test=set(cvc)),
    }


def polyp_csv(root: Path) -> dict[str, Expect]:
    base = root / "polyp" / "polyp"  # Conv-LoRA unpacks into polyp/polyp/
    train, val, kv, cvc = names("tr_", 5), names("va_", 2), names("kvt_", 2), names("cvct_", 2)
    csv_layout(base, {"train.csv": train, "val.csv": val, "test_Kvasir.csv": kv, "test_CVC-ClinicDB.csv": cvc})
    return {
        "kvasir": Expect("convlora_csv", train=set(train), val=set(val), test=set(kv)),
        "cvc_clinicdb": Expect("convlora_csv", train=set(train), val=set(val), test=set(cvc)),
    }


def polyp_public(root: Path) -> dict[str, Expect]:
    from datasets._splits import split_order

    base = root / "polyp"
    kv, cvc = names("cju", 10), [str(i) for i in range(1, 12)]
    folder_split(base, "Kvasir-SEG/images", "Kvasir-SEG/masks", kv, ".jpg", ".jpg")  # JPEG masks, as released
    folder_split(base, "CVC-ClinicDB/Original", "CVC-ClinicDB/Ground Truth", cvc, ".tif", ".tif")
    junk(base / "Kvasir-SEG", "kavsir_bboxes.json")
    kv_test, cvc_test = set(split_order(kv)[:1]), set(split_order(cvc)[:2])  # ceil(10 %)
    pool = (set(kv) - kv_test) | (set(cvc) - cvc_test)
    return {
        "kvasir": Expect("public", pool=pool, test=kv_test),
        "cvc_clinicdb": Expect("public", pool=pool, test=cvc_test),
    }


# ------------------------------------------------------------------------------------------- ISIC
def isic_public(root: Path) -> dict[str, Expect]:
    base = root / "isic2017"
    out = {}
    for split, folder, n in (("train", "Training", 5), ("val", "Validation", 2), ("test", "Test_v2", 3)):
        stems = [f"ISIC_{split}{i:04d}" for i in range(n)]
        folder_split(
            base,
            f"ISIC-2017_{folder}_Data",
            f"ISIC-2017_{folder}_Part1_GroundTruth",
            stems,
            ".jpg",
            ".png",
            "_segmentation",
        )
        for s in stems:  # superpixel maps sit next to the images; they are not samples
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
                base / f"ISIC-2017_{folder}_Data" / f"{s}_superpixels.png"
            )
        junk(base / f"ISIC-2017_{folder}_Data", f"ISIC-2017_{folder}_Data_metadata.csv")
        out[split] = set(stems)
    return {"isic2017": Expect("public", train=out["train"], val=out["val"], test=out["test"])}


def isic_csv(root: Path) -> dict[str, Expect]:
    base = root / "isic2017"
    train, val, test = names("tr_", 5), names("va_", 2), names("te_", 2)
    csv_layout(base, {"train.csv": train, "val.csv": val, "test.csv": test})
    return {"isic2017": Expect("convlora_csv", train=set(train), val=set(val), test=set(test))}


# -------------------------------------------------------------------------------------------- COD
def cod_public(root: Path) -> dict[str, Expect]:
    base = root / "cod"
    camo_tr, camo_te = names("camourflage_0", 4), names("camourflage_1", 2)
    folder_split(base, "CAMO/Images/Train", "CAMO/GT", camo_tr, ".jpg", ".png")
    folder_split(base, "CAMO/Images/Test", "CAMO/GT", camo_te, ".jpg", ".png")  # one shared GT folder
    cod_tr = [f"COD10K-CAM-1-Aquatic-1-BatFish-{i}" for i in range(3)]
    cod_te = [f"COD10K-CAM-2-Terrestrial-{i}" for i in range(2)]
    non_cam = ["COD10K-NonCAM-5-Background-1", "COD10K-NonCAM-5-Background-2"]
    folder_split(base, "COD10K-v3/Train/Image", "COD10K-v3/Train/GT_Object", cod_tr + non_cam[:1], ".jpg", ".png")
    (base / "COD10K-v3/Test/GT_Object").mkdir(parents=True)
    folder_split(base, "COD10K-v3/Test/Image", "COD10K-v3/Test/GT_Object", cod_te + non_cam[1:], ".jpg", ".png")
    folder_split(base, "COD10K-v3/Train/Image", "COD10K-v3/Train/GT_Edge", cod_tr[:1], ".jpg", ".png")  # not read
    cham = names("animal-", 3)
    folder_split(base, "CHAMELEON/Image", "CHAMELEON/GT", cham, ".jpg", ".png")
    pool = set(camo_tr) | set(cod_tr)
    return {
        "camo": Expect("public", pool=pool, test=set(camo_te)),
        "cod10k": Expect("public", pool=pool, test=set(cod_te)),
        "chameleon": Expect("public", pool=pool, test=set(cham)),
    }


def cod_sinet(root: Path) -> dict[str, Expect]:
    base = root / "camo_sem_seg"  # the archive name is accepted as the folder name too
    pool = names("camourflage_0", 3) + [f"COD10K-CAM-1-A-{i}" for i in range(3)]
    folder_split(base, "TrainDataset/Imgs", "TrainDataset/GT", pool, ".jpg", ".png")
    folder_split(base, "TrainDataset/Imgs", "TrainDataset/Edge", pool[:1], ".jpg", ".png")
    out = {}
    for key, name in (("camo", "CAMO"), ("cod10k", "COD10K"), ("chameleon", "CHAMELEON")):
        stems = names(f"{name.lower()}_t", 2)
        folder_split(base, f"TestDataset/{name}/Imgs", f"TestDataset/{name}/GT", stems, ".jpg", ".png")
        out[key] = Expect("sinet", pool=set(pool), test=set(stems))
    return out


def cod_csv(root: Path) -> dict[str, Expect]:
    base = root / "cod"
    train, val = names("tr_", 5), names("va_", 2)
    tests = {k: names(f"{k}_t", 2) for k in ("CAMO", "COD10K", "CHAMELEON")}
    csv_layout(base, {"train.csv": train, "val.csv": val, **{f"test_{k}.csv": v for k, v in tests.items()}})
    return {
        key: Expect("convlora_csv", train=set(train), val=set(val), test=set(tests[name]))
        for key, name in (("camo", "CAMO"), ("cod10k", "COD10K"), ("chameleon", "CHAMELEON"))
    }


# ------------------------------------------------------------------------------------- leaf, road, SBU
def leaf_public(root: Path) -> dict[str, Expect]:
    base = root / "leaf" / "orig_data"  # one level down, as in the Kaggle download
    train, test = names("leaf_", 6), names("leaft_", 2)
    folder_split(base, "train_images", "train_masks", train, ".jpg", ".png")
    folder_split(base, "valid_images", "valid_masks", test, ".jpg", ".png")
    return {"leaf": Expect("public", pool=set(train), test=set(test))}


def leaf_csv(root: Path) -> dict[str, Expect]:
    base = root / "leaf_disease_segmentation"
    train, val, test = names("tr_", 5), names("va_", 1), names("te_", 2)
    csv_layout(base, {"train.csv": train, "val.csv": val, "test.csv": test})
    return {"leaf": Expect("convlora_csv", train=set(train), val=set(val), test=set(test))}


def roads_public(root: Path) -> dict[str, Expect]:
    base = root / "massachusetts_roads"
    out = {}
    for split, n in (("train", 5), ("val", 1), ("test", 2)):
        stems = [f"1{split}{i:04d}5_15" for i in range(n)]
        folder_split(base, f"tiff/{split}", f"tiff/{split}_labels", stems, ".tiff", ".tif")
        out[split] = set(stems)
    junk(base, "metadata.csv", "label_class_dict.csv")
    return {"massachusetts_roads": Expect("public", train=out["train"], val=out["val"], test=out["test"])}


def roads_csv(root: Path) -> dict[str, Expect]:
    base = root / "road_segmentation"
    train, val, test = names("tr_", 5), names("va_", 1), names("te_", 2)
    csv_layout(base, {"train.csv": train, "val.csv": val, "test.csv": test})
    return {"massachusetts_roads": Expect("convlora_csv", train=set(train), val=set(val), test=set(test))}


def sbu_public(root: Path) -> dict[str, Expect]:
    base = root / "sbu"
    train, test = names("lssd", 6), names("test_", 2)
    folder_split(
        base, "SBUTrain4KRecoveredSmall/ShadowImages", "SBUTrain4KRecoveredSmall/ShadowMasks", train, ".jpg", ".png"
    )
    folder_split(base, "SBU-Test/ShadowImages", "SBU-Test/ShadowMasks", test, ".jpg", ".png")
    return {"sbu": Expect("public", pool=set(train), test=set(test))}


def sbu_csv(root: Path) -> dict[str, Expect]:
    base = root / "SBU-shadow"
    train, val, test = names("tr_", 5), names("va_", 1), names("te_", 2)
    csv_layout(base, {"train.csv": train, "val.csv": val, "test.csv": test})
    return {"sbu": Expect("convlora_csv", train=set(train), val=set(val), test=set(test))}


FIXTURES: dict[str, Callable[[Path], dict[str, Expect]]] = {
    "polyp_pranet": polyp_pranet,
    "polyp_csv": polyp_csv,
    "polyp_public": polyp_public,
    "isic_public": isic_public,
    "isic_csv": isic_csv,
    "cod_public": cod_public,
    "cod_sinet": cod_sinet,
    "cod_csv": cod_csv,
    "leaf_public": leaf_public,
    "leaf_csv": leaf_csv,
    "roads_public": roads_public,
    "roads_csv": roads_csv,
    "sbu_public": sbu_public,
    "sbu_csv": sbu_csv,
}


def cases() -> list[tuple[str, str]]:
    """(fixture, dataset) pairs: every registered real dataset in every layout it supports."""
    per_fixture = {
        "polyp": ("kvasir", "cvc_clinicdb"),
        "isic": ("isic2017",),
        "cod": ("camo", "cod10k", "chameleon"),
        "leaf": ("leaf",),
        "roads": ("massachusetts_roads",),
        "sbu": ("sbu",),
    }
    return [(fx, ds) for fx in FIXTURES for ds in per_fixture[fx.split("_")[0]]]
