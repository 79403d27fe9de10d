"""Logging set-up shared by the command line, the launcher's jobs and the measuring tools."""

from __future__ import annotations

import logging


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr as ``HH:MM:SS LEVEL logger: message``, unless the root logger is already configured."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
