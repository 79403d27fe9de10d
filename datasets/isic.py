"""Skin lesion segmentation: ISIC 2017 Part 1 (Codella et al., 2018; InfoSAM paper, App. C.2).

Registered as ``isic2017``: 2000 training, 150 validation and 600 test images, all three published
by the challenge (no split is drawn). Reported metrics: Jaccard (= IoU) and Dice.

Folder ``<data.root>/isic2017`` holds one of:

* ``public``: the challenge downloads unpacked side by side,
  ``ISIC-2017_Training_Data/ISIC_xxxxxxx.jpg`` + ``ISIC-2017_Training_Part1_GroundTruth/
  ISIC_xxxxxxx_segmentation.png``, likewise ``ISIC-2017_Validation_*`` and ``ISIC-2017_Test_v2_*``.
  The ``*_superpixels.png`` files and the ``*_metadata.csv`` of the data folders are not samples
  (ignored by rule).
* ``convlora_csv``: the Conv-LoRA ``isic2017`` archive (``train.csv``, ``val.csv``, ``test.csv``).
"""

from __future__ import annotations

from bench.contracts.dataset import DatasetInfo
from datasets._layouts import Folder, Layout, RealSpec, convlora_csv
from datasets._real import register_real


def _part(data: str, truth: str) -> Folder:
    return Folder(
        images=(data,),
        masks=(truth,),
        mask_suffix="_segmentation",
        ignore=("*_superpixels.*",),
    )


ISIC2017 = RealSpec(
    name="isic2017",
    info=DatasetInfo(family="skin", metrics=("iou", "dice")),
    folders=("isic2017",),
    layouts=(
        Layout(
            "public",
            train=(_part("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),),
            val=(_part("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),),
            test=(_part("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),),
        ),
        convlora_csv(),
    ),
    published={"train": 2000, "val": 150, "test": 600},
    source="https://challenge.isic-archive.com/data/#2017 ; Conv-LoRA archive "
    "https://automl-mm-bench.s3.amazonaws.com/semantic_segmentation/isic2017.zip",
)

isic2017 = register_real(ISIC2017)
