"""Road segmentation: Massachusetts Roads (Mnih, 2013; InfoSAM paper, App. C.4).

Registered as ``massachusetts_roads``: 1107 training, 13 validation and 48 test images as the paper
counts them (the release itself has 1108 / 14 / 49 tiles; ``prepare`` reports the difference as a
warning). Trained for 20 epochs; evaluated with 5-point prompts (2 foreground + 3 background), as in
the paper and InfoSAM's ``InfoSAM_b_road.sh`` (``--no_boxes_prompt --point_num=5``). Metrics: IoU, Dice.

Folder ``<data.root>/massachusetts_roads`` (or Conv-LoRA's archive name ``road_segmentation``) holds:

* ``public``: ``tiff/train`` + ``tiff/train_labels``, ``tiff/val`` + ``tiff/val_labels``,
  ``tiff/test`` + ``tiff/test_labels`` (images ``.tiff``, labels ``.tif``; the Kaggle copy also has
  ``png/`` with the same structure, accepted when ``tiff/`` is absent).
* ``convlora_csv``: the Conv-LoRA archive (``train.csv``, ``val.csv``, ``test.csv``).
"""

from __future__ import annotations

from bench.contracts.dataset import DatasetInfo
from datasets._layouts import Folder, Layout, RealSpec, convlora_csv
from datasets._real import register_real


def _tiles(split: str) -> Folder:
    return Folder(images=(f"tiff/{split}", f"png/{split}"), masks=(f"tiff/{split}_labels", f"png/{split}_labels"))


MASSACHUSETTS_ROADS = RealSpec(
    name="massachusetts_roads",
    info=DatasetInfo(family="road", metrics=("iou", "dice"), eval_prompt="points", eval_points=5, epochs=20),
    folders=("massachusetts_roads", "road_segmentation"),
    layouts=(
        Layout("public", train=(_tiles("train"),), val=(_tiles("val"),), test=(_tiles("test"),)),
        convlora_csv(),
    ),
    published={"train": 1107, "val": 13, "test": 48},
    source="https://www.cs.toronto.edu/~vmnih/data/ ;"
    " https://www.kaggle.com/datasets/balraj98/massachusetts-roads-dataset ;"
    " Conv-LoRA archive https://automl-mm-bench.s3.amazonaws.com/semantic_segmentation/road_segmentation.zip",
)

massachusetts_roads = register_real(MASSACHUSETTS_ROADS)
