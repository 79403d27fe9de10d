"""The files a run reads besides its dataset (checkpoints, relation modules) and their content digests.

A run's hash (:func:`bench.runs.sweep.run_hash`) covers the SHA-256 of every input file that exists, so a
checkpoint overwritten at the same path gives a new run instead of reusing the old numbers. Digests are
cached in ``<data.cache_dir>/digests.json`` keyed by (absolute path, size, mtime_ns): a multi-GB checkpoint
is read once until it changes. A run records its digests in ``inputs.json`` (and ``metrics.json``), so its
results are still found when the file is gone (a colleague's runs without the weights).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional

log = logging.getLogger(__name__)

DIGEST_CACHE = "digests.json"
_memo: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    from bench.fileio import sha256_file as digest  # here, as atomic_write below: this module stays free of torch

    return digest(path)


def input_files(run: Any) -> dict[str, str]:
    """``config key -> path`` of the files ``run`` (a :class:`bench.config.RunConfig`) loads: the student's
    and teacher's checkpoints (given, or the official file in ``backbone.checkpoints_dir``) and any
    ``*_ckpt`` / ``*checkpoint`` option of its PEFT method or distiller (e.g. ``distill.relation_ckpt``)."""
    from bench.contracts.weights import WEIGHTS, default_path

    files: dict[str, str] = {}
    b, t = run.backbone, run.teacher
    if b.checkpoint:
        files["backbone.checkpoint"] = str(b.checkpoint)
    elif b.name in WEIGHTS and not b.random_init:
        files["backbone.checkpoint"] = str(default_path(b.name, b.checkpoints_dir))
    if t.checkpoint:
        files["teacher.checkpoint"] = str(t.checkpoint)
    elif t.backbone and t.backbone in WEIGHTS and not b.random_init:
        files["teacher.checkpoint"] = str(default_path(t.backbone, b.checkpoints_dir))
    for section in ("peft", "distill"):
        for key, value in _flat(getattr(run, section) or {}).items():
            if isinstance(value, str) and value and (key.endswith("_ckpt") or key.endswith("checkpoint")):
                files[f"{section}.{key}"] = value
    return files


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def file_digest(path: str | Path, cache_dir: Optional[str | Path] = None) -> Optional[str]:
    """SHA-256 of ``path`` (None if it is not a file), cached by (absolute path, size, mtime_ns)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    if not Path(path).is_file():
        return None
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _memo:
        return _memo[key]
    store = Path(cache_dir or Path.home() / ".cache" / "samfit") / DIGEST_CACHE
    text_key = f"{key[0]}|{key[1]}|{key[2]}"
    cached = _read_cache(store)
    digest = cached.get(text_key)
    if digest is None:
        log.info("hashing %s (%.1f MB; cached afterwards)", path, stat.st_size / 1e6)
        digest = sha256_file(path)
        cached[text_key] = digest
        _write_cache(store, cached)
    _memo[key] = digest
    return digest


def _read_cache(store: Path) -> dict[str, str]:
    try:
        data = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(store: Path, data: dict[str, str]) -> None:
    from bench.fileio import atomic_write

    try:
        atomic_write(store, json.dumps(data, indent=1, sort_keys=True).encode())
    except OSError as err:  # a read-only cache only costs a re-hash next time
        log.debug("digest cache %s not written: %s", store, err)


def input_digests(run: Any, recorded: Optional[Mapping[str, str]] = None) -> dict[str, Optional[str]]:
    """``config key -> SHA-256`` of every input file of ``run``; an absent file takes its ``recorded``
    digest if given, else None."""
    out: dict[str, Optional[str]] = {}
    for key, path in input_files(run).items():
        digest = file_digest(path, run.data.cache_dir)
        out[key] = digest if digest is not None else (recorded or {}).get(key)
    return out


def input_record(run: Any) -> dict[str, dict[str, Optional[str]]]:
    """What ``inputs.json`` holds: ``config key -> {"path", "sha256"}``."""
    digests = input_digests(run)
    return {key: {"path": path, "sha256": digests[key]} for key, path in input_files(run).items()}
