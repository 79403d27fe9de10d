"""Polyp segmentation: Kvasir-SEG and CVC-ClinicDB with the PraNet split (InfoSAM paper, App. C.2).

Both registered datasets train on the PraNet training set (Fan et al., 2020, "PraNet"): 900 Kvasir-SEG
+ 550 CVC-ClinicDB images, of which 20 % are drawn once as validation (``datasets/_splits.py``) - the
paper's "20 % of the training set is randomly selected as a validation set". They differ in the test
set: ``kvasir`` tests on PraNet's 100 Kvasir images, ``cvc_clinicdb`` on its 62 CVC-ClinicDB images
(InfoSAM's ``config/*/InfoSAM_b_kvasir.sh`` trains on ``train.csv`` and tests on ``test_Kvasir.csv``
of the Conv-LoRA ``polyp`` archive; Conv-LoRA also evaluates ``test_CVC-ClinicDB.csv``).

Folder ``<data.root>/polyp`` (or ``polyp`` archive name as is) holds one of:

* ``pranet``: PraNet's ``TrainDataset/{image,images}`` + ``{mask,masks}`` and
  ``TestDataset/{Kvasir,CVC-ClinicDB}/{images,masks}`` - the paper's exact split.
* ``convlora_csv``: the Conv-LoRA archive (``train.csv``, ``val.csv``, ``test_Kvasir.csv``,
  ``test_CVC-ClinicDB.csv``); its ``val.csv`` is used as the validation split.
* ``public``: the original releases, ``Kvasir-SEG/images`` + ``masks`` (JPEG masks) and
  ``CVC-ClinicDB/Original`` + ``Ground Truth`` (TIFF; ``PNG/Original`` + ``PNG/Ground Truth`` also
  accepted). **Deviation:** the PraNet test lists are not part of these releases, so 10 % of each
  dataset (``ceil``: 100 of 1000, 62 of 612, as PraNet) is held out by the fixed split order of
  ``datasets/_splits.py``; these are not PraNet's test images, and numbers are not comparable with
  the paper's. Use the PraNet or CSV layout to reproduce the paper.
"""

from __future__ import annotations

from bench.contracts.dataset import DatasetInfo
from datasets._layouts import Folder, Layout, RealSpec, convlora_csv
from datasets._real import register_real

_INFO = DatasetInfo(family="polyp", metrics=("sm", "em_adp", "wfm"))
_FOLDERS = ("polyp",)
_SOURCE = (
    "Kvasir-SEG https://datasets.simula.no/kvasir-seg/ ; CVC-ClinicDB https://polyp.grand-challenge.org/CVCClinicDB/ ;"
    " PraNet split https://github.com/DengPingFan/PraNet ; Conv-LoRA archive "
    "https://automl-mm-bench.s3.amazonaws.com/semantic_segmentation/polyp.zip"
)
_PRANET_TRAIN = Folder(
    images=("TrainDataset/image", "TrainDataset/images"), masks=("TrainDataset/mask", "TrainDataset/masks")
)
_HOLDOUT = 0.1


def _pranet_test(name: str) -> Folder:
    return Folder(
        images=(f"TestDataset/{name}/images", f"TestDataset/{name}/image"),
        masks=(f"TestDataset/{name}/masks", f"TestDataset/{name}/mask"),
    )


def _kvasir_raw(part: str) -> Folder:
    return Folder(images=("Kvasir-SEG/images",), masks=("Kvasir-SEG/masks",), part=part, holdout=_HOLDOUT)


def _cvc_raw(part: str) -> Folder:
    return Folder(
        images=("CVC-ClinicDB/Original", "CVC-ClinicDB/PNG/Original"),
        masks=("CVC-ClinicDB/Ground Truth", "CVC-ClinicDB/PNG/Ground Truth"),
        part=part,
        holdout=_HOLDOUT,
    )


def _spec(name: str, pranet_test: str, csv_test: str, raw_test: Folder, test_count: int) -> RealSpec:
    return RealSpec(
        name=name,
        info=_INFO,
        folders=_FOLDERS,
        layouts=(
            Layout("pranet", train=(_PRANET_TRAIN,), test=(_pranet_test(pranet_test),)),
            convlora_csv(test=(csv_test,)),
            Layout("public", train=(_kvasir_raw("rest"), _cvc_raw("rest")), test=(raw_test,)),
        ),
        published={"train": 1450, "test": test_count},
        val_fraction=0.2,
        source=_SOURCE,
    )


KVASIR = _spec("kvasir", "Kvasir", "test_Kvasir.csv", _kvasir_raw("held"), 100)
CVC_CLINICDB = _spec("cvc_clinicdb", "CVC-ClinicDB", "test_CVC-ClinicDB.csv", _cvc_raw("held"), 62)

kvasir = register_real(KVASIR)
cvc_clinicdb = register_real(CVC_CLINICDB)
