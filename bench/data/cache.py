"""Disk cache of frozen encoder states (fp16, memory-mapped), shared by all runs of a machine.

A frozen teacher, or the frozen prefix of a student's encoder, sees the same preprocessed image
every epoch, so its output is computed once and reused: by every epoch, every seed and every method
that uses the same backbone weights. Entries are keyed by the backbone (name, input size, weights
digest), how the states were computed (device type, bf16 autocast or fp32, channels-last: other kernels
give other floats), the number of encoder steps run, and a digest of the preprocessed image itself, so
any change of image, preprocessing, weights or arithmetic misses the cache instead of reading stale
features.

Values are rounded to the cache dtype (``data.cache_dtype``: fp16 by default, fp32 stores the exact
float32 states) *before* they are used, whether they were just computed or read back, so a run gives
the same numbers with a cold or a warm cache. Writers save to a temporary file and
rename it, so concurrent processes (Slurm array tasks) never see a partial entry.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from bench.backbones import Backbone
from bench.fileio import atomic_save_npy

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: the compute tag is part of the key (v1 entries may hold bf16-computed states)
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}  # data.cache_dtype


def image_key(image: torch.Tensor) -> str:
    """Digest of one preprocessed (3, S, S) image."""
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:20]


class EncoderCache:
    """Cached ``backbone.encode_prefix(image, stop, blocks)`` for one backbone and one cut point.

    Each image has one file for the state after ``stop`` steps and one per requested block output
    (``<key>.npy``, ``<key>.b<index>.npy``), so runs asking for different blocks share the state.

    Args:
        root: Cache root directory (``data.cache_dir``).
        backbone: The (frozen up to ``stop``) backbone.
        stop: Number of leading encoder steps cached; ``len(backbone.encoder_steps())`` caches the
            final image embedding.
        blocks: Block indices inside the cached prefix whose outputs are cached as well.
        compute: How the states are computed (:func:`bench.hardware.accel.compute_tag`, e.g. ``cpu-fp32-cl``).
    """

    def __init__(
        self,
        root: str | Path,
        backbone: Backbone,
        stop: int,
        blocks: tuple[int, ...] = (),
        dtype: str = "fp16",
        compute: str = "cpu-fp32",
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"unknown cache dtype {dtype!r}; valid: {', '.join(DTYPES)}")
        self.backbone = backbone
        self.stop = stop
        self.blocks = tuple(sorted(blocks))
        self.dtype = DTYPES[dtype]
        suffix = "" if dtype == "fp16" else f"-{dtype}"
        tag = f"{backbone.name}-{backbone.img_size}px-{backbone.weights_id}-v{CACHE_VERSION}-{compute}{suffix}"
        self.dir = Path(root) / "encoder" / tag / f"step{stop}"
        self.hits = 0
        self.misses = 0

    def _paths(self, key: str) -> list[Path]:
        folder = self.dir / key[:2]
        return [folder / f"{key}.npy"] + [folder / f"{key}.b{b}.npy" for b in self.blocks]

    @staticmethod
    def _load(paths: list[Path]) -> list[np.ndarray] | None:
        if not all(path.is_file() for path in paths):
            return None
        try:
            return [np.load(path, mmap_mode="r") for path in paths]
        except (OSError, ValueError) as err:  # a damaged entry is recomputed
            log.warning("cache entry %s unreadable (%s); recomputing", paths[0], err)
            return None

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """States (B, ...) and block maps for a batch of preprocessed images (B, 3, S, S), on the
        images' device, in float32 (rounded to the cache dtype first)."""
        keys = [image_key(img) for img in images]
        found: dict[int, list[np.ndarray]] = {}
        for i, key in enumerate(keys):
            arrays = self._load(self._paths(key))
            if arrays is not None:
                found[i] = arrays
        missing = [i for i in range(len(keys)) if i not in found]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            state, feats = self.backbone.encode_prefix(images[missing], self.stop, self.blocks)
            computed = [state] + [feats[b] for b in self.blocks]
            computed = [t.to(self.dtype).cpu().numpy() for t in computed]
            for j, i in enumerate(missing):
                arrays = [c[j] for c in computed]
                for path, array in zip(self._paths(keys[i]), arrays):
                    atomic_save_npy(path, array)
                found[i] = arrays

        def stack(k: int) -> torch.Tensor:
            batch = np.stack([np.asarray(found[i][k]) for i in range(len(keys))])
            return torch.from_numpy(batch).to(device=images.device, dtype=torch.float32)

        return stack(0), {b: stack(k + 1) for k, b in enumerate(self.blocks)}
