"""Disk cache of frozen encoder states (fp16, memory-mapped), shared by all runs of a machine.

A frozen teacher, or the frozen prefix of a student's encoder, sees the same preprocessed image
every epoch, so its output is computed once and reused: by every epoch, every seed and every method
that uses the same backbone weights. Entries are keyed by the backbone (name, input size, weights
digest), the number of encoder steps run, and a digest of the preprocessed image itself, so any
change of image, preprocessing or weights misses the cache instead of reading stale features.

Values are rounded to fp16 *before* they are used, whether they were just computed or read back,
so a run gives the same numbers with a cold or a warm cache. Writers save to a temporary file and
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

CACHE_VERSION = 1


def image_key(image: torch.Tensor) -> str:
    """Digest of one preprocessed (3, S, S) image."""
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:20]


class EncoderCache:
    """Cached ``backbone.encode_prefix(image, stop)`` for one backbone and one cut point.

    Args:
        root: Cache root directory (``data.cache_dir``).
        backbone: The (frozen up to ``stop``) backbone.
        stop: Number of leading encoder steps cached; ``len(backbone.encoder_steps())`` caches the
            final image embedding.
    """

    def __init__(self, root: str | Path, backbone: Backbone, stop: int) -> None:
        self.backbone = backbone
        self.stop = stop
        tag = f"{backbone.name}-{backbone.img_size}px-{backbone.weights_id}-v{CACHE_VERSION}"
        self.dir = Path(root) / "encoder" / tag / f"step{stop}"
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """States (B, ...) for a batch of preprocessed images (B, 3, S, S), on the images' device."""
        keys = [image_key(img) for img in images]
        found: dict[int, np.ndarray] = {}
        for i, key in enumerate(keys):
            path = self._path(key)
            if path.is_file():
                try:
                    found[i] = np.load(path, mmap_mode="r")
                except (OSError, ValueError) as err:  # a damaged entry is recomputed
                    log.warning("cache entry %s unreadable (%s); recomputing", path, err)
        missing = [i for i in range(len(keys)) if i not in found]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            states = self.backbone.encode_prefix(images[missing], self.stop).to(torch.float16).cpu().numpy()
            for i, state in zip(missing, states):
                atomic_save_npy(self._path(keys[i]), state)
                found[i] = state
        stacked = np.stack([np.asarray(found[i]) for i in range(len(keys))])
        return torch.from_numpy(stacked).to(device=images.device, dtype=torch.float32)
