"""Camouflaged object segmentation: CAMO, COD10K, CHAMELEON (InfoSAM paper, App. C.1).

All three registered datasets train on the COD training set, CAMO train (1000) + COD10K train
(3040 camouflaged images), with 10 % drawn once as validation (``datasets/_splits.py``), and differ in
the test set: ``camo`` (250), ``cod10k`` (2026 camouflaged test images), ``chameleon`` (76, test only).
Metrics: S_alpha, adaptive E_phi, weighted F (the SOD toolbox convention, ``bench/eval/metrics.py``).

Folder ``<data.root>/cod`` (or Conv-LoRA's archive name ``camo_sem_seg``) holds one of:

* ``public``: the releases side by side: ``CAMO/Images/Train`` and ``CAMO/Images/Test`` with the
  shared mask folder ``CAMO/GT`` (``CAMO-V.1.0-CVIU2019/`` also accepted); ``COD10K/Train/Image`` +
  ``Train/GT_Object`` and ``COD10K/Test/Image`` + ``Test/GT_Object`` (``COD10K-v3/`` also accepted;
  only names containing ``-CAM-`` are samples: the ``NonCAM`` images are not camouflaged objects and
  are ignored by rule, as in the paper's 3040 / 2026 counts; ``GT_Edge`` / ``GT_Instance`` are not
  read); ``CHAMELEON/Image`` (or ``Imgs``) + ``CHAMELEON/GT``. Only the folders a dataset needs must
  exist (``camo`` does not need CHAMELEON).
* ``sinet``: the SINet / SINet-V2 re-packaging, ``TrainDataset/Imgs`` + ``GT`` (CAMO + COD10K
  train, 4040) and ``TestDataset/{CAMO,COD10K,CHAMELEON}/Imgs`` + ``GT``.
* ``convlora_csv``: the Conv-LoRA ``camo_sem_seg`` archive (``train.csv``, ``val.csv``,
  ``test_CAMO.csv``); it has no COD10K / CHAMELEON test CSV, so ``cod10k`` and ``chameleon`` need
  ``test_COD10K.csv`` / ``test_CHAMELEON.csv`` written by the user in the same format.
"""

from __future__ import annotations

from bench.contracts.dataset import DatasetInfo
from datasets._layouts import Folder, Layout, RealSpec, Source, convlora_csv
from datasets._real import register_real

_INFO = DatasetInfo(family="camouflage", metrics=("sm", "em_adp", "wfm"))
_SOURCE = (
    "CAMO https://sites.google.com/view/ltnghia/research/camo ; COD10K https://dengpingfan.github.io/pages/COD.html ;"
    " CHAMELEON https://www.polsl.pl/rau6/chameleon-database-animal-camouflage-analysis/ ;"
    " SINet-V2 https://github.com/GewelsJI/SINet-V2 ; Conv-LoRA archive "
    "https://automl-mm-bench.s3.amazonaws.com/semantic_segmentation/camo_sem_seg.zip"
)
_CAMO_DIRS = ("CAMO", "CAMO-V.1.0-CVIU2019")
_COD_DIRS = ("COD10K", "COD10K-v3")


def _camo(split: str) -> Folder:
    return Folder(
        images=tuple(f"{d}/Images/{split}" for d in _CAMO_DIRS),
        masks=tuple(f"{d}/GT" for d in _CAMO_DIRS),
        shared_masks=True,
    )


def _cod10k(split: str) -> Folder:
    return Folder(
        images=tuple(f"{d}/{split}/Image" for d in _COD_DIRS),
        masks=tuple(f"{d}/{split}/GT_Object" for d in _COD_DIRS),
        keep="*-CAM-*",
    )


_CHAMELEON = Folder(images=("CHAMELEON/Image", "CHAMELEON/Imgs", "CHAMELEON/images"), masks=("CHAMELEON/GT",))


def _sinet_test(name: str) -> Folder:
    return Folder(images=(f"TestDataset/{name}/Imgs", f"TestDataset/{name}/Image"), masks=(f"TestDataset/{name}/GT",))


def _spec(name: str, public_test: Source, sinet_test: str, csv_test: str, test_count: int) -> RealSpec:
    return RealSpec(
        name=name,
        info=_INFO,
        folders=("cod", "camo_sem_seg"),
        layouts=(
            Layout("public", train=(_camo("Train"), _cod10k("Train")), test=(public_test,)),
            Layout(
                "sinet",
                train=(Folder(images=("TrainDataset/Imgs", "TrainDataset/Image"), masks=("TrainDataset/GT",)),),
                test=(_sinet_test(sinet_test),),
            ),
            convlora_csv(test=(csv_test,)),
        ),
        published={"train": 4040, "test": test_count},
        val_fraction=0.1,
        source=_SOURCE,
    )


CAMO = _spec("camo", _camo("Test"), "CAMO", "test_CAMO.csv", 250)
COD10K = _spec("cod10k", _cod10k("Test"), "COD10K", "test_COD10K.csv", 2026)
CHAMELEON = _spec("chameleon", _CHAMELEON, "CHAMELEON", "test_CHAMELEON.csv", 76)

camo = register_real(CAMO)
cod10k = register_real(COD10K)
chameleon = register_real(CHAMELEON)
