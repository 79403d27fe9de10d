"""Shadow detection: SBU Shadow (Vicente et al., ECCV 2016), the Conv-LoRA poster's SBU column.

Registered as ``sbu``: 4089 training images (10 % drawn once as validation, our choice: neither
InfoSAM nor Conv-LoRA's paper gives a fraction for SBU; the Conv-LoRA archive ships its own
``val.csv``) and 638 test images. Metric: BER (balanced error rate, lower is better; Conv-LoRA's
validation and test metric for SBU). Not among the InfoSAM paper's tables.

Folder ``<data.root>/sbu`` (or Conv-LoRA's archive name ``SBU-shadow``) holds one of:

* ``public``: ``SBUTrain4KRecoveredSmall/ShadowImages`` + ``ShadowMasks`` and
  ``SBU-Test/ShadowImages`` + ``ShadowMasks`` (the test folder is also accepted as ``SBU-Test_rename``).
* ``convlora_csv``: the Conv-LoRA archive (``train.csv``, ``val.csv``, ``test.csv``).
"""

from __future__ import annotations

from bench.contracts.dataset import DatasetInfo
from datasets._layouts import Folder, Layout, RealSpec, convlora_csv
from datasets._real import register_real

SBU = RealSpec(
    name="sbu",
    info=DatasetInfo(family="shadow", metrics=("ber",)),
    folders=("sbu", "SBU-shadow"),
    layouts=(
        Layout(
            "public",
            train=(
                Folder(
                    images=("SBUTrain4KRecoveredSmall/ShadowImages",), masks=("SBUTrain4KRecoveredSmall/ShadowMasks",)
                ),
            ),
            test=(
                Folder(
                    images=("SBU-Test/ShadowImages", "SBU-Test_rename/ShadowImages"),
                    masks=("SBU-Test/ShadowMasks", "SBU-Test_rename/ShadowMasks"),
                ),
            ),
        ),
        convlora_csv(),
    ),
    published={"train": 4089, "test": 638},
    val_fraction=0.1,
    source="https://www3.cs.stonybrook.edu/~cvl/projects/shadow_noisy_label/index.html ; Conv-LoRA archive "
    "https://automl-mm-bench.s3.amazonaws.com/semantic_segmentation/SBU-shadow.zip",
)

sbu = register_real(SBU)
