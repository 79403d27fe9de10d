"""Leaf disease segmentation (Rath, 2023, Kaggle; InfoSAM paper, App. C.3).

Registered as ``leaf``: 498 training images (20 % drawn once as validation, ``datasets/_splits.py``)
and 90 test images; the mask is the diseased area. Reported metrics: IoU and Dice.

Folder ``<data.root>/leaf`` (or Conv-LoRA's archive name ``leaf_disease_segmentation``) holds one of:

* ``public``: the Kaggle release "Leaf Disease Segmentation (with train/valid split)",
  ``train_images`` + ``train_masks`` and ``test_images`` + ``test_masks`` (the release's
  ``valid_images`` + ``valid_masks`` are accepted as the test folders: they are the paper's 90 test
  images). The release may sit one or two folders down (e.g. ``orig_data/``).
* ``convlora_csv``: the Conv-LoRA archive (``train.csv``, ``val.csv``, ``test.csv``).
"""

from __future__ import annotations

from bench.contracts.dataset import DatasetInfo
from datasets._layouts import Folder, Layout, RealSpec, convlora_csv
from datasets._real import register_real

LEAF = RealSpec(
    name="leaf",
    info=DatasetInfo(family="leaf", metrics=("iou", "dice")),
    folders=("leaf", "leaf_disease_segmentation"),
    layouts=(
        convlora_csv(),
        Layout(
            "public",
            train=(Folder(images=("train_images",), masks=("train_masks",)),),
            test=(Folder(images=("test_images", "valid_images"), masks=("test_masks", "valid_masks")),),
        ),
    ),
    published={"train": 498, "test": 90},
    val_fraction=0.2,
    source="https://www.kaggle.com/datasets/sovitrath/leaf-disease-segmentation-with-trainvalid-split ; "
    "Conv-LoRA archive https://automl-mm-bench.s3.amazonaws.com/semantic_segmentation/leaf_disease_segmentation.zip",
)

leaf = register_real(LEAF)
