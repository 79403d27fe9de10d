"""Options dataclasses from config dicts: the one builder every method, distiller and backbone uses."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.config import ConfigError


def build_options(options_cls: type, values: dict[str, Any], owner: str) -> Any:
    """Instantiate an options dataclass from a config dict; unknown keys raise naming the valid ones."""
    names = {f.name for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {owner}; valid options: {sorted(names)}")
    try:
        return options_cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{owner}: {err}") from None
