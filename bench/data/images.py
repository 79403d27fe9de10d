"""Image and mask files: decoding (Pillow; truncated files raise) and mask binarisation at half range.

Used by the real datasets (``datasets/``), ``predict`` and ``score``; every failure is a
:class:`bench.contracts.dataset.DatasetError` naming the file. The binarisation rule is described in
``datasets/_verify.py`` ("Masks").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bench.contracts.dataset import DatasetError

IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MAX_MID_FRACTION = 0.25  # share of pixels far from both ends above which a file is not a mask
_MID_BAND = (0.1, 0.9)


def _decode(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"{path}: unreadable or truncated image file ({err})") from None


def read_image(path: Path) -> np.ndarray:
    """Decode an image file as (H, W, 3) uint8 RGB; :class:`DatasetError` naming the file otherwise."""
    im = _decode(path)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        arr = arr / max(float(arr.max()), 1.0) * 255.0
        im = Image.fromarray(arr.astype(np.uint8))
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _mask_values(path: Path) -> tuple[np.ndarray, float]:
    """Raw mask values (H, W) and the value range of the file's sample type."""
    im = _decode(path)
    if im.mode == "1":
        return np.asarray(im, dtype=np.uint8), 1.0
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.int64)
        return arr, 255.0 if arr.max(initial=0) <= 255 else 65535.0
    if im.mode == "F":
        raise DatasetError(f"{path}: floating-point image, not a mask")
    if im.mode == "P":  # palette masks: the index is the label (0/1, or 0/255)
        return np.asarray(im, dtype=np.uint8), 255.0
    if im.mode not in ("L", "LA"):
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            rgb = np.asarray(im.convert("L"), dtype=np.uint8)[..., None]
        return rgb[..., 0], 255.0
    return np.asarray(im.convert("L"), dtype=np.uint8), 255.0


def binarize_mask(values: np.ndarray, value_range: float, where: str) -> np.ndarray:
    """Binarise raw mask values at half range (see module docstring); (H, W) uint8 in {0, 1}.

    Raises:
        DatasetError: naming ``where`` when the values are clearly not a binary mask.
    """
    if values.size == 0:
        raise DatasetError(f"{where}: empty mask")
    top = float(values.max())
    if top <= 1:
        return values.astype(np.uint8)
    lo, hi = _MID_BAND[0] * value_range, _MID_BAND[1] * value_range
    if lo < top < value_range / 2:
        raise DatasetError(
            f"{where}: mask values 0..{top:.0f} are neither 0/1 nor 0/{value_range:.0f} (label-index mask?)"
        )
    mid = float(np.count_nonzero((values > lo) & (values < hi))) / values.size
    if mid > MAX_MID_FRACTION:
        raise DatasetError(
            f"{where}: not a binary mask ({mid:.0%} of pixels lie between {lo:.0f} and {hi:.0f}; "
            f"a mask has values near 0 and {value_range:.0f}, or 0/1)"
        )
    return (values > value_range / 2).astype(np.uint8)


def read_mask(path: Path) -> np.ndarray:
    """Decode and binarise a mask file; (H, W) uint8 in {0, 1}."""
    values, value_range = _mask_values(path)
    return binarize_mask(values, value_range, str(path))
