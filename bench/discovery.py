"""The one place where ``bench`` reaches its plugins: import every module of a plugin package so that its
files register themselves (one file = one entry).

The registries (:class:`bench.registry.Registry`) name their packages (``methods.peft``, ``datasets``,
``bench.backbones`` ...) and call :func:`discover` on their first lookup; nothing else under ``bench/``
imports ``methods`` or ``datasets`` (``tests/test_import_graph.py`` checks it).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def import_submodules(package: ModuleType) -> None:
    """Import all modules of ``package`` and of its sub-packages whose names do not start with ``_``."""
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            if info.ispkg:
                import_submodules(module)


def discover(package: str) -> None:
    """Import the package named ``package`` and all its public modules (already imported ones are cached)."""
    import_submodules(importlib.import_module(package))
