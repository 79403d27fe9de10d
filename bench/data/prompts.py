"""Prompt sampling from ground-truth masks (InfoSAM §5 protocol).

Training: each batch is prompted either by the GT box with up to ``jitter`` px of noise on every
coordinate (``corners``) or shifted as a whole as the public InfoSAM code does (``translate``), or by
``num_points`` positive points drawn from the GT (1:1 by default). Evaluation:
the exact GT box, or ``k`` points (``k // 2`` foreground + the rest background, as the public code
does for roads), drawn with a generator seeded by the image name so that every method and seed is
scored on identical prompts.

All coordinates here are (x, y) pixels of the original image; :func:`to_input_frame` maps them
into the resized model input.
"""

from __future__ import annotations

import hashlib

import numpy as np


class EmptyMaskError(ValueError):
    """The mask has no foreground pixel, so no box or positive point can be drawn."""


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, identical on every machine and process."""
    text = "\x1f".join(map(str, parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight box (x0, y0, x1, y1) around the foreground of an (H, W) mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise EmptyMaskError("mask is empty: no box can be drawn")
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def jitter_box(box: np.ndarray, jitter: float, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Add uniform noise in [-jitter, jitter] to each coordinate, clipped to the image and kept ordered."""
    if jitter <= 0:
        return box.copy()
    h, w = shape
    noisy = box + rng.uniform(-jitter, jitter, size=4).astype(np.float32)
    noisy[[0, 2]] = np.clip(noisy[[0, 2]], 0, w - 1)
    noisy[[1, 3]] = np.clip(noisy[[1, 3]], 0, h - 1)
    x0, x1 = sorted(noisy[[0, 2]])
    y0, y1 = sorted(noisy[[1, 3]])
    return np.array([x0, y0, x1, y1], dtype=np.float32)


def translate_box(
    box: np.ndarray, max_pixel: float, shape: tuple[int, int], rng: np.random.Generator, frame: int = 1024
) -> np.ndarray:
    """The public InfoSAM code's box noise (``util/utils.py``, ``get_single_box_from_mask``).

    In the frame that code works in (the longest side resized to ``frame`` = 1024 px): the tight box is
    shifted as a whole by one integer per axis, ``dx, dy ~ randint(-m, m)`` (NumPy's exclusive upper end,
    so ``m`` itself is never drawn) with ``m = min(max_pixel, int(0.1 * min(w, h) * 5))``, ``w, h`` the box's
    extent; coordinates are clipped at 0 only. Where ``m = 0`` (a box under 2 px wide) the public code
    raises; here the box stays exact. Returns the box in original pixels (float32).
    """
    scale = frame / max(shape)
    x0, y0, x1, y1 = np.round(box.astype(np.float64) * scale)
    limit = min(int(max_pixel), int(min(x1 - x0, y1 - y0) * 0.1 * 5))
    dx, dy = (int(rng.integers(-limit, limit)), int(rng.integers(-limit, limit))) if limit > 0 else (0, 0)
    moved = np.array([max(0, x0 + dx), max(0, y0 + dy), max(0, x1 + dx), max(0, y1 + dy)]) / scale
    return moved.astype(np.float32)


def sample_points(mask: np.ndarray, n_pos: int, n_neg: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_pos`` foreground and ``n_neg`` background points (with replacement if needed).

    Returns:
        coords (n_pos + n_neg, 2) as (x, y) float32 and labels (n,) int64 (1 fg, 0 bg).
    """
    fg = np.argwhere(mask > 0)
    bg = np.argwhere(mask == 0)
    if n_pos and fg.size == 0:
        raise EmptyMaskError("mask is empty: no positive point can be drawn")
    picks, labels = [], []
    for pool, n, label in ((fg, n_pos, 1), (bg, n_neg, 0)):
        if n == 0 or pool.size == 0:
            continue
        idx = rng.choice(len(pool), size=n, replace=len(pool) < n)
        picks.append(pool[idx][:, ::-1])  # (y, x) -> (x, y)
        labels += [label] * n
    coords = np.concatenate(picks).astype(np.float32)
    return coords, np.array(labels, dtype=np.int64)


def to_input_frame(coords: np.ndarray, original: tuple[int, int], resized: tuple[int, int]) -> np.ndarray:
    """Scale (..., 2k) x/y coordinates from the original image to the resized model input."""
    (h, w), (nh, nw) = original, resized
    scale = np.array([nw / w, nh / h], dtype=np.float32)
    shaped = coords.reshape(-1, 2) * scale
    return shaped.reshape(coords.shape).astype(np.float32)
