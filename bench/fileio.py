"""File helpers: atomic writes (a reader, or a killed writer, never sees a partial file), file digests, and
moving a damaged file aside."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)
CORRUPT_SUFFIX = ".corrupt"


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc``; else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the mode a plain ``open`` would give (0666 minus the umask: 0644 by default), not the
    0600 of temporary files, so results stay readable by the group and other users the umask allows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:  # name the file (a full disk raises from write/fsync without a name)
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write(path, buf.getvalue())


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


def hash_file(path: str | Path, *hashers: Any) -> None:
    """Feed the bytes of ``path`` to every ``hashlib`` object in ``hashers``, in one read."""
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            for hasher in hashers:
                hasher.update(chunk)


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    hash_file(path, digest)
    return digest.hexdigest()


def move_aside(path: Path, reason: str) -> Path:
    """Rename a damaged file to ``<name>.corrupt`` (replacing an older one) and log why."""
    target = path.with_name(path.name + CORRUPT_SUFFIX)
    os.replace(path, target)
    log.warning("%s is damaged (%s): moved aside to %s", path, reason, target.name)
    return target
