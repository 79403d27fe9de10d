"""The fixed split order of sample names, and the validation split drawn from a training pool.

* **Validation split.** When a layout has no validation files, ``RealSpec.val_fraction`` of the
  training pool is drawn once: the pool's names are ordered by ``sha256(f"{SPLIT_SEED}|{name}")``
  and the first ``round(fraction * n)`` form the validation split. This depends only on the names
  (no RNG whose stream could change between library versions), so every machine gets the same split.
  It is written to ``<data.cache_dir>/splits/<dataset>__<layout>.json`` and logged
  (:class:`datasets._real.RealDataset`). It is drawn only with ``data.hold_out_val`` true (the default, what
  ``eval.select=val_best`` reads); a protocol that never reads a validation split (``infosam``) sets it false
  and trains on the whole pool, with an empty ``val`` split. Validation files a layout ships are kept either way.

The same order holds out the test part of a release without a test split (``Folder.part``) and the
test split of the folder dataset (``datasets/folder.py``).
"""

from __future__ import annotations

import hashlib

SPLIT_SEED = "samfit-split-v1"


def split_order(names: list[str]) -> list[str]:
    """Names in the fixed, machine-independent split order (sha256 of seed and name)."""
    return sorted(names, key=lambda n: (hashlib.sha256(f"{SPLIT_SEED}|{n}".encode()).hexdigest(), n))


def draw_validation(names: list[str], fraction: float) -> set[str]:
    """The validation names drawn from a training pool (see module docstring)."""
    if fraction <= 0 or len(names) < 2:
        return set()
    k = min(len(names) - 1, max(1, round(fraction * len(names))))
    return set(split_order(sorted(names))[:k])
