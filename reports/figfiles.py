"""Figure files written atomically (PNG + PDF): a reader never sees a half-written figure."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

from bench.fileio import atomic_write

log = logging.getLogger(__name__)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, stem: Path, dpi: int = 110, tight: bool = True) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (each through a temporary file) and close it.

    ``tight=False`` for a figure laid out already (``tight_layout``): the tight bounding box costs a second
    rendering of the whole figure per file."""
    paths = []
    for suffix in (".png", ".pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=suffix[1:], dpi=dpi, bbox_inches="tight" if tight else None)
        path = stem.with_suffix(suffix)
        atomic_write(path, buf.getvalue())
        paths.append(path)
    pyplot().close(fig)
    log.info("figure written to %s.{png,pdf}", stem)
    return paths
