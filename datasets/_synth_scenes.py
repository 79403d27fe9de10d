"""Drawing the synthetic domains: procedural noise, textures from scikit-image's bundled photos, shapes, and
one generator per domain (``(rng, h, w) -> (image in [0, 1], bool mask)``). :mod:`datasets.synthetic` seeds
them, caches their samples and registers the datasets; the domains' prose is there."""

from __future__ import annotations

import colorsys
import logging
from functools import lru_cache
from typing import Callable, Optional

import cv2
import numpy as np

logger = logging.getLogger(__name__)

_PHOTOS = ("brick", "grass", "gravel", "moon", "chelsea", "coffee", "rocket", "hubble_deep_field")
_CAMO_TEXTURES = ("grass", "gravel", "brick", "noise")  # stationary textures only

Array = np.ndarray
Generator = Callable[[np.random.Generator, int, int], tuple[Array, Array]]


# ----------------------------------------------------------------------------------------- helpers
def _noise(rng: np.random.Generator, h: int, w: int, base: float = 4, octaves: int = 4, persist: float = 0.5) -> Array:
    """Fractal value noise (H, W) float32 in [0, 1]; ``base`` cells along the longer side."""
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for octave in range(octaves):
        cells = base * 2**octave
        gh, gw = max(2, round(cells * h / max(h, w))) + 1, max(2, round(cells * w / max(h, w))) + 1
        out += amp * cv2.resize(rng.random((gh, gw), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= persist
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


@lru_cache(maxsize=None)
def _photo(name: str) -> Optional[Array]:
    """A bundled scikit-image photo as float32 (H, W, C) in [0, 1], or None if it cannot be loaded."""
    try:
        import skimage.data

        arr = np.asarray(getattr(skimage.data, name)())
    except Exception as err:  # missing file, no pooch, no network: fall back to noise
        logger.warning("skimage.data.%s unavailable (%s); using procedural noise", name, err)
        return None
    arr = arr.astype(np.float32) / 255.0
    arr = arr[..., None] if arr.ndim == 2 else arr[..., :3]
    lo, hi = np.percentile(arr, (1, 99))  # one stretch per photo: crops keep their relative brightness
    return np.clip((arr - lo) / max(float(hi - lo), 1e-3), 0, 1)


def missing_photos() -> list[str]:
    return [name for name in _PHOTOS if _photo(name) is None]


def _texture(rng: np.random.Generator, name: str, h: int, w: int, zoom: float = 1.0, gray: bool = False) -> Array:
    """A random crop of photo ``name`` (rotated/flipped, scaled by ``zoom``) as (H, W, C) float32."""
    src = None if name == "noise" else _photo(name)
    if src is None:
        tex = _noise(rng, h, w, base=rng.uniform(6, 16), octaves=5, persist=0.6)[..., None]
    else:
        k = int(rng.integers(4))
        th, tw = (w, h) if k % 2 else (h, w)
        ch, cw = min(src.shape[0], max(8, round(th / zoom))), min(src.shape[1], max(8, round(tw / zoom)))
        y0, x0 = int(rng.integers(src.shape[0] - ch + 1)), int(rng.integers(src.shape[1] - cw + 1))
        crop = np.rot90(src[y0 : y0 + ch, x0 : x0 + cw], k)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        interp = cv2.INTER_AREA if ch * cw > h * w else cv2.INTER_LINEAR
        tex = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=interp).reshape(h, w, -1)
    if gray and tex.shape[2] == 3:
        tex = tex.mean(axis=2, keepdims=True)
    return tex.astype(np.float32)


def _colorize(t: Array, dark: Array, light: Array) -> Array:
    """Map a (H, W, 1) gray texture onto the dark→light RGB ramp; colour textures are tinted."""
    if t.shape[2] == 3:
        return t * (0.35 + 0.65 * light / max(float(light.max()), 1e-3)) + 0.15 * dark
    return dark + t * (light - dark)


def _earthy(rng: np.random.Generator) -> tuple[Array, Array]:
    """A dark and a light RGB colour (float32) of one natural hue (sand, brown, olive, moss)."""
    hue, sat = rng.uniform(0.05, 0.38), rng.uniform(0.25, 0.6)
    light = np.array(colorsys.hsv_to_rgb(hue, sat, rng.uniform(0.6, 0.9)), np.float32)
    dark = np.array(
        colorsys.hsv_to_rgb(hue + rng.normal(0, 0.03), min(1.0, sat * 1.3), rng.uniform(0.1, 0.3)), np.float32
    )
    return dark, light


def _largest(mask: Array) -> Array:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask.astype(bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _blob(rng: np.random.Generator, h: int, w: int, cx: float, cy: float, rx: float, ry: float, wobble: float) -> Array:
    """A rotated ellipse whose radius varies with low harmonics of the angle; (H, W) bool."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, np.pi)
    dx, dy = xx - cx, yy - cy
    u, v = (np.cos(a) * dx + np.sin(a) * dy) / rx, (-np.sin(a) * dx + np.cos(a) * dy) / ry
    theta = np.arctan2(v, u)
    radius = np.ones_like(u)
    for k in range(2, 7):
        radius += wobble * rng.normal() / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(u, v) < radius


def _roughen(rng: np.random.Generator, mask: Array, sigma: float, amp: float, base: float) -> Array:
    """Smooth then perturb a mask's outline with noise; keeps the largest component."""
    h, w = mask.shape
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    return _largest(soft + amp * (_noise(rng, h, w, base=base, octaves=3) - 0.5) > 0.5)


def _alpha(mask: Array, sigma: float) -> Array:
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)[..., None]


def _bezier(rng: np.random.Generator, p0: Array, p3: Array, bend: float) -> Array:
    """Points (N, 2) int32 of a cubic Bezier from p0 to p3 with random control points."""
    d = p3 - p0
    normal = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6)
    p1 = p0 + d / 3 + normal * rng.normal(0, bend)
    p2 = p0 + 2 * d / 3 + normal * rng.normal(0, bend)
    t = np.linspace(0, 1, 80)[:, None]
    pts = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
    return np.round(pts).astype(np.int32)


# -------------------------------------------------------------------------------------- generators
def gen_camo(rng: np.random.Generator, h: int, w: int) -> tuple[Array, Array]:
    s = min(h, w)
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    rx = rng.uniform(0.15, 0.3) * s
    body = _blob(rng, h, w, cx, cy, rx, rx * rng.uniform(0.45, 0.9), wobble=0.35).astype(np.uint8)
    for _ in range(int(rng.integers(1, 5))):  # limbs, tail, head
        ang = rng.uniform(0, 2 * np.pi)
        length, width = rng.uniform(0.5, 1.1) * rx, rng.uniform(0.12, 0.3) * rx
        ex, ey = cx + np.cos(ang) * (rx * 0.6 + length * 0.5), cy + np.sin(ang) * (rx * 0.6 + length * 0.5)
        axes = (max(1, int(length / 2)), max(1, int(width)))
        cv2.ellipse(body, (int(ex), int(ey)), axes, float(np.degrees(ang)), 0, 360, 1, -1)
    mask = _roughen(rng, body, sigma=0.02 * s, amp=rng.uniform(0.3, 0.6), base=s / 12)
    name = str(rng.choice(_CAMO_TEXTURES))
    dark, light = _earthy(rng)
    zoom = rng.uniform(0.7, 1.6)
    bg = _colorize(_texture(rng, name, h, w, zoom, gray=True), dark, light)
    fg_zoom = zoom * rng.choice([0.8, 1.25]) * rng.uniform(0.95, 1.05)
    fg = _colorize(_texture(rng, name, h, w, fg_zoom, gray=True), dark, light)
    fg = fg * (1 + rng.normal(0, 0.03, 3).astype(np.float32)) + rng.normal(0, 0.02)
    shadow = _alpha(np.roll(mask, (int(rng.integers(1, 4)), int(rng.integers(-3, 4))), (0, 1)), 0.015 * s)
    bg = bg * (1 - rng.uniform(0.03, 0.12) * shadow)
    alpha = _alpha(mask, rng.uniform(0.6, 1.2))
    img = bg * (1 - alpha) + fg * alpha
    img *= 0.75 + 0.5 * _noise(rng, h, w, base=2, octaves=2)[..., None]
    return img, mask


def gen_polyp(rng: np.random.Generator, h: int, w: int) -> tuple[Array, Array]:
    s = min(h, w)
    base = np.array([rng.uniform(0.72, 0.92), rng.uniform(0.32, 0.52), rng.uniform(0.3, 0.45)], np.float32)
    img = base * (0.75 + 0.4 * _noise(rng, h, w, base=3)[..., None])
    img[..., 1:] += 0.08 * (_noise(rng, h, w, base=5, octaves=3)[..., None] - 0.5)
    folds = np.sin(2 * np.pi * rng.uniform(1.5, 3) * _noise(rng, h, w, base=2, octaves=2)) ** 2
    img *= 1 - rng.uniform(0.15, 0.3) * cv2.GaussianBlur(np.exp(-folds / 0.08), (0, 0), 0.01 * s + 0.5)[..., None]
    r = rng.uniform(0.12, 0.28) * s
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    mask = _roughen(rng, _blob(rng, h, w, cx, cy, r, r * rng.uniform(0.7, 1.0), 0.15), 0.03 * s, 0.15, s / 8)
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    dome = np.sqrt(1 - (1 - dist / max(float(dist.max()), 1.0)) ** 2)[..., None]
    tint = 1 + rng.uniform(-0.1, 0.08) * np.array([0.2, 1.0, 0.9], np.float32)
    texture = 0.9 + 0.2 * _noise(rng, h, w, base=s / 10, octaves=2)[..., None]
    mix = rng.uniform(0.55, 0.85)  # how much of the mucosa (folds, shading) shows through the polyp
    polyp = (img * mix + base * texture * (1 - mix)) * tint * (0.85 + 0.2 * dome)
    alpha = _alpha(mask, rng.uniform(0.02, 0.045) * s)
    img = img * (1 - alpha) + polyp * alpha
    for _ in range(int(rng.integers(1, 4))):  # polyp-like bumps of plain mucosa beside it (distractors)
        ang = rng.uniform(0, 2 * np.pi)
        bx, by = cx + 1.3 * r * np.cos(ang), cy + 1.3 * r * np.sin(ang)
        bump = _blob(rng, h, w, bx, by, 0.7 * r, 0.5 * r, 0.2) & ~mask
        bump_d = cv2.GaussianBlur(bump.astype(np.float32), (0, 0), 0.1 * r)[..., None]
        img *= 1 + rng.uniform(-0.12, 0.12) * bump_d
    for _ in range(int(rng.integers(4, 11))):  # vessels, fainter on the polyp
        p0 = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        p3 = p0 + rng.normal(0, 0.4 * s, 2)
        layer = np.zeros((h, w), np.float32)
        cv2.polylines(layer, [_bezier(rng, p0, p3, 0.1 * s)], False, 1.0, int(rng.integers(1, 3)), cv2.LINE_AA)
        a = rng.uniform(0.2, 0.45) * cv2.GaussianBlur(layer, (0, 0), 0.7)[..., None] * (1 - 0.6 * alpha)
        img = img * (1 - a) + np.array([0.5, 0.1, 0.12], np.float32) * a
    spec = np.zeros((h, w), np.float32)
    ys, xs = np.nonzero(mask)
    for _ in range(int(rng.integers(3, 12))):
        on_polyp = rng.random() < 0.6 and len(ys) > 0
        j = int(rng.integers(len(ys))) if on_polyp else 0
        x, y = (xs[j], ys[j]) if on_polyp else (rng.uniform(0, w), rng.uniform(0, h))
        axes = (int(rng.integers(1, 5)), int(rng.integers(1, 3)))
        cv2.ellipse(spec, (int(x), int(y)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    img += cv2.GaussianBlur(spec, (0, 0), 1.0)[..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rad = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    img *= np.clip(1 - rng.uniform(0.3, 0.6) * rad**2, 0.05, 1)[..., None]
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.2)), mask


def gen_leaf(rng: np.random.Generator, h: int, w: int) -> tuple[Array, Array]:
    s = min(h, w)
    name = _PHOTOS[int(rng.integers(len(_PHOTOS)))]
    bg_col = rng.uniform(0.2, 0.7, 3).astype(np.float32)
    bg = _colorize(_texture(rng, name, h, w, rng.uniform(0.5, 1.5)), bg_col * 0.3, bg_col)
    bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(1, 4)).reshape(h, w, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, a = w / 2 + rng.normal(0, 0.05 * w), h / 2 + rng.normal(0, 0.05 * h), rng.uniform(0, np.pi)
    half_len = rng.uniform(0.45, 0.6) * np.hypot(h, w) * 0.7
    u = (np.cos(a) * (xx - cx) + np.sin(a) * (yy - cy)) / half_len
    v = (-np.sin(a) * (xx - cx) + np.cos(a) * (yy - cy)) / half_len
    width = rng.uniform(0.3, 0.5) * np.clip(1 - u, 0, None) ** rng.uniform(0.7, 1.0) * np.clip(1 + u, 0, None) ** 0.5
    width *= 1 + 0.03 * np.sin(u * rng.uniform(30, 60))
    leaf = np.abs(v) < width
    green = np.array([rng.uniform(0.2, 0.45), rng.uniform(0.45, 0.7), rng.uniform(0.08, 0.25)], np.float32)
    col = green * (0.8 + 0.35 * _noise(rng, h, w, base=6)[..., None])
    veins = (
        np.exp(-((np.abs(v) / 0.012) ** 2))
        + np.exp(-((np.sin(rng.uniform(9, 16) * (u + 1.2 * np.abs(v))) / 0.12) ** 2)) * 0.5
    )
    col = col + 0.15 * (veins * (np.abs(v) < width * 0.92))[..., None].astype(np.float32)
    img = bg * (1 - _alpha(leaf, 0.8)) + col * _alpha(leaf, 0.8)
    lesions = np.zeros((h, w), np.uint8)
    inner = np.argwhere(leaf & (np.abs(v) < width * 0.85))
    centre = inner[int(rng.integers(len(inner)))] if len(inner) else np.array([h // 2, w // 2])
    spread = rng.uniform(0.08, 0.3) * s
    for _ in range(int(rng.integers(2, 9))):
        py, px = centre + rng.normal(0, spread, 2)
        r = rng.uniform(0.03, 0.1) * s * (2.0 if rng.random() < 0.25 else 1.0)
        lesions |= _blob(rng, h, w, px, py, r, r * rng.uniform(0.5, 1.0), 0.4).astype(np.uint8)
    lesions = cv2.GaussianBlur(lesions.astype(np.float32), (0, 0), 0.01 * s + 0.5)
    lesions += 0.5 * (_noise(rng, h, w, base=s / 10, octaves=3) - 0.5)
    mask = (lesions > 0.5) & leaf
    if mask.sum() < 0.005 * h * w:  # too little disease to be a useful sample: add a spot
        mask |= _blob(rng, h, w, centre[1], centre[0], 0.07 * s, 0.05 * s, 0.2) & leaf
        mask[int(centre[0]), int(centre[1])] = True
    halo = _alpha(cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8), iterations=int(rng.integers(1, 3))), 1.5)
    img = (
        img * (1 - 0.6 * halo * leaf[..., None]) + np.array([0.8, 0.72, 0.2], np.float32) * 0.6 * halo * leaf[..., None]
    )
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)[..., None]
    brown = np.array([rng.uniform(0.35, 0.6), rng.uniform(0.22, 0.38), rng.uniform(0.06, 0.16)], np.float32)
    spot = brown * (0.7 + 0.5 * _noise(rng, h, w, base=s / 8, octaves=2)[..., None]) * (1 - 0.3 * np.exp(-dist / 3))
    alpha = _alpha(mask, 0.7)
    return img * (1 - alpha) + spot * alpha, mask


def gen_road(rng: np.random.Generator, h: int, w: int) -> tuple[Array, Array]:
    s = min(h, w)
    palette = np.array([[0.35, 0.45, 0.2], [0.55, 0.5, 0.3], [0.45, 0.55, 0.3], [0.6, 0.55, 0.45], [0.3, 0.38, 0.22]])
    fields = np.stack([_noise(rng, h, w, base=3, octaves=2) for _ in range(4)])
    img = palette[rng.permutation(5)[:4]].astype(np.float32)[np.argmax(fields, axis=0)]
    img = img.mean(axis=(0, 1)) + rng.uniform(0.3, 0.6) * (img - img.mean(axis=(0, 1)))  # muted fields
    img *= 0.75 + 0.4 * _texture(
        rng, str(rng.choice(["grass", "gravel", "moon"])), h, w, rng.uniform(0.5, 2), gray=True
    )
    img *= 1 + 0.1 * (rng.random((h, w, 3), dtype=np.float32) - 0.5)
    mask = np.zeros((h, w), np.uint8)
    # roads end on the border of a window: the whole image, or a settlement's part of it (dead ends)
    span = np.array([w - 1, h - 1], np.float64) * (1.0 if rng.random() < 0.5 else rng.uniform(0.55, 0.85, 2))
    origin = rng.uniform(0, 1, 2) * (np.array([w - 1, h - 1]) - span)

    def border_point() -> Array:
        t, side = rng.uniform(0, 1), int(rng.integers(4))
        return origin + np.array([[t, 0], [t, 1], [0, t], [1, t]][side]) * span

    roads: list[Array] = []
    for _ in range(int(rng.integers(3, 6))):
        if roads and rng.random() < 0.5:  # T-junction from a point on an existing road
            start = roads[int(rng.integers(len(roads)))][int(rng.integers(10, 70))].astype(np.float64)
        else:
            start = border_point()
        ends = [border_point() for _ in range(8)]  # the farthest of a few candidates: no stubs
        end = max(ends, key=lambda p: float(np.hypot(*(p - start))))
        pts = _bezier(rng, start, end, bend=0.15 * s)
        roads.append(pts)
        cv2.polylines(mask, [pts], False, 1, int(rng.integers(4, 10)), cv2.LINE_8)
    buildings = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(0, 12))):
        c = (float(rng.uniform(0, w)), float(rng.uniform(0, h)))
        box = cv2.boxPoints((c, (float(rng.uniform(4, 14)), float(rng.uniform(4, 14))), float(rng.uniform(0, 90))))
        cv2.fillPoly(buildings, [box.astype(np.int32)], 1)
    buildings &= 1 - cv2.dilate(mask, np.ones((5, 5), np.uint8))
    roof = rng.uniform(0.45, 0.75)
    b = _alpha(buildings, 0.5)
    img = img * (1 - 0.4 * _alpha(np.roll(buildings, (2, 2), (0, 1)), 1.0)) * (1 - b) + roof * b
    grey = np.array([0.55, 0.53, 0.5], np.float32) * (0.6 if rng.random() < 0.3 else 1.4) * rng.uniform(0.9, 1.1)
    grey += rng.normal(0, 0.03, 3).astype(np.float32)
    road_col = grey * (0.9 + 0.2 * _noise(rng, h, w, base=s / 6, octaves=2)[..., None])
    a = _alpha(mask, 0.6)
    img = img * (1 - a) + road_col * a
    trees = _noise(rng, h, w, base=s / 14, octaves=2) * _noise(rng, h, w, base=3, octaves=2) > rng.uniform(0.5, 0.65)
    t = _alpha(trees, 0.8)
    img = (
        img * (1 - t)
        + np.array([0.15, 0.25, 0.1], np.float32)
        * (0.7 + 0.6 * _noise(rng, h, w, base=s / 5, octaves=2))[..., None]
        * t
    )
    return cv2.GaussianBlur(img, (0, 0), 0.6), mask.astype(bool)
