"""``synth_shapes``: a deterministic multi-class (``semantic``) synthetic domain for the CPU demo and CI.

Classes (index = class id): ``background`` (0), ``disc`` (1), ``square`` (2, rotated), ``triangle`` (3) and
``ring`` (4, an annulus whose hole shows what lies below). Each image has a textured background (a crop of a
bundled scikit-image photo or procedural noise, colourised) and 0..3 objects of every shape class, drawn with
cv2 in a random order, so a later object hides the earlier ones where they overlap (the label map follows the
draw order). Objects are filled with their class's hue (jittered) modulated by a texture and lit by a linear
shading, so colour is a cue but not a perfect one. About a third of the objects get a 1-pixel band of the
ignore index (255) along their outline (drawn in draw order too). The object of class ``1 + index % 4`` that
is drawn *last* in sample ``index`` is always present, so any ``K - 1 = 4`` consecutive samples of a split
contain every shape class.

Seeding, image sides, split sizes (``data.synth.*_size``) and the PNG cache are those of the binary synthetic
domains (:mod:`datasets.synthetic`); the label map is cached as ``<name>_labels.png``. Reported metrics:
pixel accuracy and mIoU.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from bench.config import DataConfig
from bench.contracts.dataset import DatasetInfo, SegmentationDataset, register_dataset
from datasets._synth_scenes import Array, _colorize, _earthy, _noise, _texture
from datasets.synthetic import SyntheticDataset, add_domain

NAME = "synth_shapes"
VERSION = "shapes-v1"
CLASSES = ("background", "disc", "square", "triangle", "ring")
IGNORE = 255
MAX_PER_CLASS = 3
EDGE_BAND_PROB = 1 / 3
_HUES = {1: 0.0, 2: 0.33, 3: 0.6, 4: 0.14}  # red-ish discs, green squares, blue triangles, yellow rings
_BACKGROUNDS = ("brick", "grass", "gravel", "coffee", "noise")

INFO = DatasetInfo(
    family="shapes",
    metrics=("acc", "miou"),
    eval_prompt="none",
    task="semantic",
    classes=CLASSES,
    epochs=10,
    own_val=True,
)  # promptless, as Conv-LoRA on Trans10K-v2 (the multi-class domain this one stands in for)


def _shape(rng: np.random.Generator, cls: int, h: int, w: int) -> Array:
    """One object of class ``cls`` as an (H, W) uint8 0/1 mask, at least ~6 px across."""
    side = min(h, w)
    r = float(rng.uniform(0.06, 0.16)) * side + 3
    cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
    out = np.zeros((h, w), np.uint8)
    centre = (round(cx), round(cy))
    if cls == 1:
        cv2.circle(out, centre, round(r), 1, thickness=-1)
    elif cls in (2, 3):
        corners = 4 if cls == 2 else 3
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.arange(corners) * 2 * np.pi / corners
        pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)
        cv2.fillPoly(out, [np.round(pts).astype(np.int32)], 1)
    else:
        cv2.circle(out, centre, round(r), 1, thickness=-1)
        cv2.circle(out, centre, max(1, round(r * rng.uniform(0.4, 0.6))), 0, thickness=-1)
    return out


def _fill(rng: np.random.Generator, cls: int, h: int, w: int) -> Array:
    """The object's appearance: its class hue (jittered), textured and shaded, (H, W, 3) float32 in [0, 1]."""
    hue = (_HUES[cls] + rng.normal(0, 0.04)) % 1.0
    base = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 0.85), rng.uniform(0.55, 0.95)), np.float32)
    tex = _noise(rng, h, w, base=rng.uniform(8, 20), octaves=3)[..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    shade = 0.8 + 0.2 * (np.cos(a) * xx / w + np.sin(a) * yy / h)[..., None]
    return np.clip(base * (0.75 + 0.35 * tex) * shade, 0, 1)


def gen_shapes(rng: np.random.Generator, h: int, w: int, guaranteed: int = 1) -> tuple[Array, Array]:
    """A textured background with 0..3 objects per shape class; ``guaranteed``'s last object is drawn last.

    Returns:
        ``(image, labels)``: (H, W, 3) float32 in [0, 1] and (H, W) uint8 class ids (255 on the ignore bands).
    """
    dark, light = _earthy(rng)
    background = _texture(rng, str(rng.choice(_BACKGROUNDS)), h, w, zoom=float(rng.uniform(0.7, 1.5)), gray=True)
    image = _colorize(background, dark, light).astype(np.float32)
    labels = np.zeros((h, w), np.uint8)
    counts = {cls: int(rng.integers(0, MAX_PER_CLASS + 1)) for cls in range(1, len(CLASSES))}
    counts[guaranteed] = max(1, counts[guaranteed])
    order = [cls for cls, n in counts.items() for _ in range(n)]
    order.remove(guaranteed)
    order = [order[i] for i in rng.permutation(len(order))] + [guaranteed]
    for cls in order:
        mask = _shape(rng, cls, h, w).astype(bool)
        image[mask] = _fill(rng, cls, h, w)[mask]
        labels[mask] = cls
        if rng.random() < EDGE_BAND_PROB:
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(labels, contours, -1, IGNORE, thickness=1)
    image = cv2.GaussianBlur(image, (0, 0), 0.7)  # soft edges, like a camera
    image = image + rng.normal(0, 0.015, image.shape).astype(np.float32)
    return np.clip(image, 0, 1), labels


def _generate(rng: np.random.Generator, h: int, w: int, index: int) -> tuple[Array, Array]:
    return gen_shapes(rng, h, w, guaranteed=1 + index % (len(CLASSES) - 1))


add_domain(NAME, _generate, INFO, VERSION)


@register_dataset(NAME, INFO)
def synth_shapes(split: str, cfg: DataConfig) -> SegmentationDataset:
    """Discs, squares, triangles and rings on textured backgrounds (a label map per image)."""
    return SyntheticDataset(NAME, split, cfg)
