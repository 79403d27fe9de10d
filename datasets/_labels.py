"""Label maps of the ``semantic`` datasets (Trans10K-v2, label-map folders): reading them, and palette colours.

* **Label maps** are PNG files whose pixel value is the class index (:attr:`DatasetInfo.classes` order) or
  :attr:`DatasetInfo.ignore_index` (255 by default: unlabelled, no loss, no metric). Palette (``P``) files are
  read by their *index* (the palette only colours them for viewers, as PIL's ``.convert("P")`` in
  Trans2Seg's loader), grayscale (``L``) files by value. Any other mode is not a label map
  (:func:`read_label_map`), unless the dataset maps colours back to indices through a palette
  (:func:`palette_decoder`, Trans10K-v2's RGB-saved masks).
* **Values** outside the classes that are not the ignore index are errors naming the file
  (:func:`bench.contracts.dataset.check_sample` with the dataset's info).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from bench.contracts.dataset import DatasetError
from bench.data.images import _decode
from bench.data.labels import voc_palette

LabelReader = Callable[[Path], np.ndarray]


def read_label_map(path: Path) -> np.ndarray:
    """A ``P`` (palette index) or ``L`` (grey value) PNG as (H, W) uint8 class indices; DatasetError otherwise."""
    im = _decode(Path(path))
    if im.mode in ("P", "L"):
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    raise DatasetError(
        f"{path}: a label map must be a palette (P) or grayscale (L) PNG whose pixel values are class indices, "
        f"got mode {im.mode}"
    )


def palette_decoder(num_classes: int, ignore_index: int, palette: np.ndarray | None = None) -> LabelReader:
    """A reader of label maps that also accepts RGB(A) files coloured with ``palette`` (VOC by default).

    ``P`` and ``L`` files are read as :func:`read_label_map`. In an RGB file, a pixel whose colour is palette
    entry ``c`` for a class ``c < num_classes`` (or the ignore index's entry) gets value ``c``; a grey file
    saved as RGB (R = G = B, every value a class or the ignore index) is read by value. Any other colour is
    a DatasetError naming the file and the colour.
    """
    pal = voc_palette() if palette is None else np.asarray(palette, np.uint8)
    values = list(range(num_classes)) + ([ignore_index] if ignore_index < len(pal) else [])
    codes = {int(_code(pal[v])): v for v in values}
    allowed = set(range(num_classes)) | {ignore_index}

    def read(path: Path) -> np.ndarray:
        im = _decode(Path(path))
        if im.mode in ("P", "L"):
            return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
        if im.mode not in ("RGB", "RGBA"):
            raise DatasetError(f"{path}: a label map must be a P, L or palette-coloured RGB PNG, got mode {im.mode}")
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        grey = rgb[..., 0]
        if np.array_equal(grey, rgb[..., 1]) and np.array_equal(grey, rgb[..., 2]):
            if set(np.unique(grey).tolist()) <= allowed:
                return np.ascontiguousarray(grey)
        code = _code(rgb)
        uniq, inverse = np.unique(code, return_inverse=True)
        unknown = [int(u) for u in uniq if int(u) not in codes]
        if unknown:
            u = unknown[0]
            colour = ((u >> 16) & 255, (u >> 8) & 255, u & 255)
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise DatasetError(
                f"{path}: unknown colour RGB{colour}{more}: not the palette colour of a class (0..{num_classes - 1}) "
                f"or of the ignore index {ignore_index}"
            )
        lut = np.array([codes[int(u)] for u in uniq], np.uint8)
        return np.ascontiguousarray(lut[inverse.reshape(code.shape)])

    return read


def _code(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb).astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
