"""One generic name → object registry, used for methods, distillers, datasets and backbones.

Duplicate names raise, unknown names raise with the list of valid choices, and ``names("lora*")``
filters with fnmatch patterns (the pattern style of ``timm.list_models``). A registry names the plugin
packages it is filled from; the first lookup imports them (:mod:`bench.discovery`), so a file dropped
into such a folder registers itself. ``register(name, **meta)`` keeps facts about an entry that are
readable without building it (a dataset's protocol facts, a backbone's family ...): :meth:`Registry.meta`.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Generic, Iterator, TypeVar

from bench.discovery import discover

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists the valid choices."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from lower-case names to registered objects and their metadata.

    Args:
        kind: What is registered (``"method"``, ``"dataset"`` ...), used in error messages.
        packages: Dotted names of the plugin packages whose modules register entries here; imported
            (every module not starting with ``_``) on the first lookup.
    """

    def __init__(self, kind: str, *packages: str) -> None:
        self.kind = kind
        self.packages = packages
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._discovered = not packages

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` with ``meta``; raises on an invalid or duplicate name."""

        def decorator(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, **meta: Any) -> None:
        if not name or name != name.lower() or any(c.isspace() for c in name) or "+" in name:
            raise ValueError(f"invalid {self.kind} name {name!r}: use lower case, no spaces, no '+'")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        self._meta[name] = dict(meta)

    def discover(self) -> None:
        """Import the plugin packages (again: modules added since the last call register now)."""
        self._discovered = True
        for package in self.packages:
            discover(package)

    def _entries_loaded(self) -> dict[str, T]:
        if not self._discovered:
            self.discover()
        return self._entries

    def get(self, name: str) -> T:
        try:
            return self._entries_loaded()[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}") from None

    def meta(self, name: str) -> dict[str, Any]:
        """The metadata given to ``register(name, **meta)``; unknown names raise like :meth:`get`."""
        self.get(name)
        return dict(self._meta[name])

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries_loaded() if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries_loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries_loaded())
