"""Synthetic stand-ins for the InfoSAM paper's four domains, generated deterministically.

Each domain is a small generator of (image, mask) pairs in the spirit of the real dataset it stands
in for, hard enough that a zero-shot SAM with a tight box prompt is clearly imperfect, with cues a
fine-tuned model can learn:

- ``synth_camo`` (camouflaged objects, COD10K/CAMO-like): an irregular animal-like body (a blob with
  limbs and a roughened outline) filled with *the same* texture as the background - another crop
  of the same photo or noise, at a slightly different scale and with a faint tint - under one shared
  illumination field. Hard: no colour or edge contrast to speak of; the cues are texture scale, the
  tint and a faint contact shadow.
- ``synth_polyp`` (Kvasir/CVC-like): a dome-shaded blob with a soft edge on pink-red mucosa with folds
  and vessels, specular highlights on and off the polyp, vignetting and defocus. Hard: low colour
  contrast and a blurred boundary; the highlights and folds are distractors.
- ``synth_leaf`` (Leaf Disease Segmentation-like): a green leaf with veins on a blurred background;
  the mask is the diseased *lesions* only - several brown spots and irregular patches with yellow
  halos. Hard: the box around the lesions also frames healthy leaf, so SAM tends to segment the
  leaf (or one spot) instead of the set of lesions.
- ``synth_road`` (DeepGlobe/Massachusetts-like): a few roads 2-6 px wide (Bezier curves, crossings and
  T-junctions) on aerial-like land cover with fields, tree canopies (which also occlude roads) and
  grey roofs. Hard: thin, long, multi-branch structures whose box is nearly the whole image.

Sample ``i`` of ``(domain, split)`` depends only on the domain, the split, ``i`` and the side bounds of
:class:`~bench.config.SynthConfig` (a SHA-256 seed), so train and test never share an image and every
machine generates the same data. Image height and width are drawn independently in
``[min_side, max_side]``. Textures come from photos bundled with scikit-image (no network); a photo
that cannot be loaded falls back to procedural noise (recorded in the manifest).

Samples are cached as PNG files under ``<cache_dir>/synth/<domain>/<split>/`` (``<name>.png`` and
``<name>_mask.png`` with values 0/255) plus ``manifest.json`` (generator version, SynthConfig values,
texture availability); a mismatching manifest triggers regeneration. Every file is written to a
temporary file and moved into place with :func:`os.replace`, so concurrent processes are safe.

Other modules add domains with :func:`add_domain` (``datasets/shapes.py``: ``synth_shapes``, a ``semantic``
domain); a semantic domain's target is a label map, cached as ``<name>_labels.png`` with the class indices
as pixel values (the ignore index included) and checked against the domain's classes when read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import cv2
import numpy as np

from bench.config import DataConfig, SynthConfig
from bench.contracts.dataset import (
    DatasetError,
    DatasetInfo,
    Sample,
    SegmentationDataset,
    check_sample,
    register_dataset,
)
from bench.fileio import atomic_write

from ._synth_scenes import Array, Generator, gen_camo, gen_leaf, gen_polyp, gen_road, missing_photos

logger = logging.getLogger(__name__)

IndexedGenerator = Callable[[np.random.Generator, int, int, int], tuple[Array, Array]]
"""A generator that also gets the sample's index: ``(rng, h, w, index) -> (image, target)``."""

GENERATOR_VERSION = "synth-v4"
SYNTH_SPLITS = ("train", "val", "test")
_SIDE_LIMITS = (32, 4096)


# ------------------------------------------------------------------------------------ the datasets
@dataclass(frozen=True)
class _Domain:
    generate: Union[Generator, IndexedGenerator]
    info: DatasetInfo
    version: str = GENERATOR_VERSION
    indexed: bool = False  # generate takes the sample index too

    @property
    def semantic(self) -> bool:
        return self.info.task == "semantic"

    @property
    def target_suffix(self) -> str:
        """File suffix of the cached target: a 0/255 mask, or a label map of class indices."""
        return "_labels.png" if self.semantic else "_mask.png"


_DOMAINS: dict[str, _Domain] = {
    "synth_camo": _Domain(gen_camo, DatasetInfo(family="camouflage", metrics=("sm", "em_adp", "wfm"), own_val=True)),
    "synth_polyp": _Domain(gen_polyp, DatasetInfo(family="polyp", metrics=("sm", "em_adp", "wfm"), own_val=True)),
    "synth_leaf": _Domain(gen_leaf, DatasetInfo(family="leaf", metrics=("iou", "dice"), own_val=True)),
    "synth_road": _Domain(
        gen_road,
        DatasetInfo(
            family="road", metrics=("iou", "dice"), eval_prompt="points", eval_points=5, epochs=20, own_val=True
        ),
    ),
}


def add_domain(name: str, generate: IndexedGenerator, info: DatasetInfo, version: str) -> None:
    """Add a synthetic domain generated by ``generate`` (``(rng, h, w, index) -> (image in [0, 1], target)``;
    the target is a 0/1 mask, or for a ``semantic`` ``info`` a uint8 label map; ``rng`` is already seeded by
    the sample, ``index`` lets a domain spread its content over a split) and cached like the built-in ones;
    ``version`` goes into the cache manifest (change it when the generator changes). The caller registers the
    dataset builder (:class:`SyntheticDataset`), with ``info.own_val=True`` (its validation split is its own, not
    drawn from the training images). A name already taken is a ValueError."""
    if name in _DOMAINS:
        raise ValueError(f"synthetic domain {name!r} is already defined")
    if info.task not in ("binary", "semantic"):
        raise ValueError(f"synthetic domain {name!r}: task {info.task!r} is not generated (binary or semantic)")
    _DOMAINS[name] = _Domain(generate, info, version, indexed=True)


def _synth_values(synth: SynthConfig) -> dict[str, int]:
    return {key: int(getattr(synth, key)) for key in ("train_size", "test_size", "min_side", "max_side")}


def _check_synth(domain: str, synth: SynthConfig) -> None:
    values = _synth_values(synth)
    lo, hi = values["min_side"], values["max_side"]
    if not _SIDE_LIMITS[0] <= lo <= hi <= _SIDE_LIMITS[1]:
        raise DatasetError(
            f"{domain}: need {_SIDE_LIMITS[0]} <= data.synth.min_side <= data.synth.max_side <= "
            f"{_SIDE_LIMITS[1]}, got min_side={lo}, max_side={hi}"
        )


def generate_sample(domain: str, split: str, index: int, synth: SynthConfig) -> tuple[Array, Array]:
    """Generate sample ``index`` of ``(domain, split)`` without touching the cache.

    Returns:
        ``(image, target)``: (H, W, 3) uint8 RGB and (H, W) uint8: a mask in {0, 1}, or for a semantic domain
        a label map (class indices or the ignore index); H and W in ``[synth.min_side, synth.max_side]``.
    """
    if domain not in _DOMAINS:
        raise DatasetError(f"unknown synthetic domain {domain!r}; valid: {', '.join(_DOMAINS)}")
    _check_synth(domain, synth)
    key = f"{domain}|{split}|{index}|{int(synth.min_side)}|{int(synth.max_side)}"
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
    h, w = (int(x) for x in rng.integers(int(synth.min_side), int(synth.max_side) + 1, size=2))
    spec = _DOMAINS[domain]
    image, mask = spec.generate(rng, h, w, index) if spec.indexed else spec.generate(rng, h, w)  # type: ignore[call-arg]
    image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image), mask.astype(np.uint8)


def _png(array: Array, where: Path) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise DatasetError(f"{where}: PNG encoding failed")
    return buf.tobytes()


class SyntheticDataset(SegmentationDataset):
    """One synthetic domain's split, generated once into the cache and then read from PNG files.

    Args:
        domain: A key of the synthetic domains (``"synth_camo"``, ``"synth_polyp"``, ...).
        split: ``"train"``, ``"val"`` (data.synth.val_size images, for checkpoint selection) or ``"test"``.
        cfg: Data options; ``cfg.synth`` sets the sizes, ``cfg.cache_dir`` the cache root.
    """

    def __init__(self, domain: str, split: str, cfg: DataConfig) -> None:
        if split not in SYNTH_SPLITS:
            raise DatasetError(f"{domain}: unknown split {split!r}; valid splits: {', '.join(SYNTH_SPLITS)}")
        _check_synth(domain, cfg.synth)
        self.domain, self.split, self.synth = domain, split, cfg.synth
        self.info = _DOMAINS[domain].info
        self._domain = _DOMAINS[domain]
        count = int(getattr(cfg.synth, f"{split}_size"))
        if count < 1:
            raise DatasetError(f"{domain}: empty {split} split (data.synth.{split}_size={count})")
        self.root = Path(cfg.cache_dir) / "synth" / domain / split
        self.names = [f"{domain}_{split}_{i:04d}" for i in range(count)]
        self._ensure_cache()

    def _manifest(self) -> dict[str, object]:
        return {
            "generator": self._domain.version,
            "domain": self.domain,
            "split": self.split,
            "synth": _synth_values(self.synth),
            "missing_photos": missing_photos(),
            "names": self.names,
        }

    def _ensure_cache(self) -> None:
        manifest_path = self.root / "manifest.json"
        expected = self._manifest()
        try:
            current = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            current = None
        stale = current != expected
        suffix = self._domain.target_suffix
        todo = [
            i
            for i, name in enumerate(self.names)
            if stale or not (self.root / f"{name}.png").is_file() or not (self.root / f"{name}{suffix}").is_file()
        ]
        if not todo:
            return
        logger.info("generating %d %s/%s samples into %s", len(todo), self.domain, self.split, self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        for i in todo:
            image, mask = generate_sample(self.domain, self.split, i, self.synth)
            base = self.root / self.names[i]
            atomic_write(base.with_name(f"{self.names[i]}.png"), _png(image[..., ::-1], base))
            target = mask if self._domain.semantic else mask * 255
            atomic_write(base.with_name(f"{self.names[i]}{suffix}"), _png(target, base))
        if stale:
            atomic_write(manifest_path, (json.dumps(expected, indent=1) + "\n").encode())

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        name = self.names[index]
        image_path, mask_path = self.root / f"{name}.png", self.root / f"{name}{self._domain.target_suffix}"
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{image_path}: unreadable image")
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if mask is None or mask.ndim != 2 or mask.dtype != np.uint8:
            raise DatasetError(f"{mask_path}: unreadable or not a single-channel 8-bit mask")
        if self._domain.semantic:
            labels: Sample = {
                "image": np.ascontiguousarray(image[..., ::-1]),
                "labels": np.ascontiguousarray(mask),
                "name": name,
                "split": self.split,
            }
            return check_sample(labels, str(mask_path), self.info)
        if not np.isin(mask, (0, 255)).all():
            raise DatasetError(f"{mask_path}: mask values must be 0/255")
        sample: Sample = {
            "image": np.ascontiguousarray(image[..., ::-1]),
            "mask": (mask > 127).astype(np.uint8),
            "name": name,
            "split": self.split,
        }
        return check_sample(sample, str(image_path))


@register_dataset("synth_camo", _DOMAINS["synth_camo"].info)
def synth_camo(split: str, cfg: DataConfig) -> SegmentationDataset:
    """Camouflage-like objects sharing the background's texture."""
    return SyntheticDataset("synth_camo", split, cfg)


@register_dataset("synth_polyp", _DOMAINS["synth_polyp"].info)
def synth_polyp(split: str, cfg: DataConfig) -> SegmentationDataset:
    """Soft-edged polyps on endoscopy-like mucosa."""
    return SyntheticDataset("synth_polyp", split, cfg)


@register_dataset("synth_leaf", _DOMAINS["synth_leaf"].info)
def synth_leaf(split: str, cfg: DataConfig) -> SegmentationDataset:
    """Disease lesions (the mask) on a leaf."""
    return SyntheticDataset("synth_leaf", split, cfg)


@register_dataset("synth_road", _DOMAINS["synth_road"].info)
def synth_road(split: str, cfg: DataConfig) -> SegmentationDataset:
    """Thin road networks on aerial-like land cover."""
    return SyntheticDataset("synth_road", split, cfg)
