"""Reading a sample, and verifying every pair of a split once before it is used.

* **Masks** are binarised at half range: values in ``{0, 1}`` are taken as they are; otherwise the
  threshold is half the value range (127.5 for 8-bit, 32767.5 for 16-bit files), so JPEG masks with
  values near 0 and 255 are fine. A file with more than :data:`bench.data.images.MAX_MID_FRACTION` of its pixels far
  from both ends (between 10 % and 90 % of the range) is not a mask and is rejected, as is a file
  whose largest value lies between 10 % and 50 % of the range (e.g. label-index masks 0/38).
* **Verification.** Before a split is used, every pair is decoded once (readable, truncated files
  caught, sizes equal, mask binary); a stamp under ``<data.cache_dir>/verified/`` keyed by file
  names, sizes and modification times skips this next time. A run therefore never starts on a broken
  dataset; the error names the file.

Images are decoded with Pillow (truncated files raise instead of being padded silently), converted to
RGB (palette, grey and RGBA images included; alpha dropped); EXIF orientation is not applied to either
file, so images and masks stay aligned as stored.

* **Label maps** (``semantic`` datasets: ``spec.info.task == "semantic"``): the mask file is a label map read by
  ``spec.read_labels`` (default :func:`datasets._labels.read_label_map`, see :mod:`datasets._labels`); the sample
  carries ``labels`` instead of ``mask``, and a value that is neither a class nor the ignore index is an error
  naming the mask file. The verification stamp of a semantic split also records its classes.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional

from bench.contracts.dataset import DatasetError, Sample, check_sample
from bench.data.images import read_image, read_mask
from bench.fileio import atomic_write
from datasets._labels import read_label_map
from datasets._layouts import RealSpec
from datasets._pairing import Pair, _raise_problems

logger = logging.getLogger(__name__)


def load_pair(pair: Pair, split: str, spec: Optional[RealSpec] = None) -> Sample:
    """Read one sample (a label map when ``spec`` is semantic); every failure is a :class:`DatasetError` naming
    the file."""
    if spec is not None and spec.info.task == "semantic":
        return _load_labels(pair, split, spec)
    image = read_image(pair.image)
    mask = read_mask(pair.mask)
    if mask.shape != image.shape[:2]:
        raise DatasetError(
            f"{pair.mask}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
            f"{pair.image.name} size {image.shape[1]}x{image.shape[0]}"
        )
    sample: Sample = {"image": image, "mask": mask, "name": pair.name, "split": split}
    return check_sample(sample, str(pair.image))


def _load_labels(pair: Pair, split: str, spec: RealSpec) -> Sample:
    image = read_image(pair.image)
    labels = (spec.read_labels or read_label_map)(pair.mask)
    if labels.shape != image.shape[:2]:
        raise DatasetError(
            f"{pair.mask}: label map size {labels.shape[1]}x{labels.shape[0]} differs from image "
            f"{pair.image.name} size {image.shape[1]}x{image.shape[0]}"
        )
    sample: Sample = {"image": image, "labels": labels, "name": pair.name, "split": split}
    return check_sample(sample, str(pair.mask), spec.info)


def _fingerprint(pairs: list[Pair]) -> str:
    h = hashlib.sha256()
    for pair in pairs:
        for path in (pair.image, pair.mask):
            st = path.stat()
            h.update(f"{pair.name}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def verify_pairs(pairs: list[Pair], split: str, spec: Optional[RealSpec] = None) -> list[str]:
    """Decode every pair; the problems found, each naming its file."""
    problems = []
    for pair in pairs:
        try:
            load_pair(pair, split, spec)
        except DatasetError as err:
            problems.append(str(err))
    return problems


def _verify_once(
    name: str, split: str, pairs: list[Pair], cache_dir: str | Path, spec: Optional[RealSpec] = None
) -> None:
    key = _fingerprint(pairs)
    if spec is not None and spec.info.task == "semantic":  # binary stamps keep their names
        info = spec.info
        tag = hashlib.sha256(f"{'|'.join(info.classes)}|{info.ignore_index}".encode()).hexdigest()[:8]
        key = f"{key}__semantic{tag}"
    stamp = Path(cache_dir) / "verified" / f"{name}__{split}__{key}.ok"
    if stamp.is_file():
        return
    logger.info("%s/%s: verifying %d image/mask pairs (once)", name, split, len(pairs))
    _raise_problems(verify_pairs(pairs, split, spec))
    atomic_write(stamp, f"{len(pairs)} pairs verified\n".encode())
