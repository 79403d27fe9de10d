"""Label maps as files: the PASCAL VOC palette that colours class indices in ``P``-mode PNGs (Trans2Seg's
``_getvocpallete``), and writing a label map that way (``predict`` on a semantic run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC palette as (n, 3) uint8 RGB: Trans2Seg's ``_getvocpallete`` (segmentron/utils/visualize.py).

    For class ``j`` the bits of ``j`` are interleaved into the top bits of R, G, B:
    ``r |= ((j >> 0) & 1) << (7 - i)``, ``g |= ((j >> 1) & 1) << (7 - i)``, ``b |= ((j >> 2) & 1) << (7 - i)``,
    then ``i += 1``, ``j >>= 3`` until ``j`` is 0.
    """
    out = np.zeros((n, 3), np.uint8)
    for cls in range(n):
        j, i, rgb = cls, 0, [0, 0, 0]
        while j:
            for c in range(3):
                rgb[c] |= ((j >> c) & 1) << (7 - i)
            i += 1
            j >>= 3
        out[cls] = rgb
    return out


def save_label_map(labels: np.ndarray, path: Path) -> None:
    """Write an (H, W) uint8 label map as a ``P``-mode PNG: pixel value = class index, coloured with the VOC
    palette for viewers (what Trans10K-v2's masks and :func:`datasets._labels.read_label_map` expect)."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    im = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
    im.putpalette(voc_palette().reshape(-1).tolist())
    im.save(path)
