"""Config checks: the one walker over the schema's field rules, and YAML merges that name the bad key.

:func:`check_values` reads each field's ``metadata`` (``"range"``: a :class:`~bench.config.schema.Range`,
``"choices"``: the allowed strings) on a sweep or one run, so a rule is written once, beside its field in
:mod:`bench.config.schema`. :func:`merge_checked` turns OmegaConf's errors (unknown key, wrong type) into a
:class:`~bench.config.schema.ConfigError` naming the key and the valid keys beside it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.config.schema import BenchConfig, ConfigError, Range


def check_values(cfg: Any, prefix: str = "") -> None:
    """Every field of ``cfg`` (a sweep, one run, or one of their sections) with a rule in its metadata holds an
    allowed value, else one line naming the key, the rule and the value. Null passes (the schema's type says
    where null is allowed); a list is checked item by item.

    Args:
        cfg: A dataclass instance of the schema (:class:`~bench.config.schema.BenchConfig`,
            :class:`~bench.config.schema.RunConfig`, ...).
        prefix: The dotted key of ``cfg`` inside the whole config (``"train."``); empty at the top.

    Raises:
        ConfigError: The first field, in schema order, whose value breaks its rule.
    """
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            check_values(value, f"{key}.")
        elif value is None:
            continue
        elif "range" in f.metadata:
            for item in value if isinstance(value, list) else [value]:
                _check_range(key, f.metadata["range"], item)
        elif "choices" in f.metadata and value not in f.metadata["choices"]:
            raise ConfigError(f"unknown {key} {value!r}; valid: {', '.join(f.metadata['choices'])}")


def _check_range(key: str, rule: Range, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    need = rule.violation(value)
    if need is not None:
        raise ConfigError(f"{key} must be {need}, got {value!r}")


def merge_checked(base: DictConfig, other: Any, origin: str) -> DictConfig:
    """``base`` with ``other`` merged on top; OmegaConf's error becomes one line starting with ``origin``."""
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        raise ConfigError(f"{origin}: {_explain(err, key)}") from None


def _explain(err: OmegaConfBaseException, key: str) -> str:
    msg = str(err).splitlines()[0]
    if "not in struct" in msg or "Key '" in msg and "not" in msg:
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = OmegaConf.structured(BenchConfig)
        try:
            sub = OmegaConf.select(node, parent) if parent else node
            valid = ", ".join(sorted(sub.keys())) if isinstance(sub, DictConfig) else ""
        except OmegaConfBaseException:
            valid = ""
        return f"unknown key {key!r}" + (f"; valid keys here: {valid}" if valid else "")
    return f"bad value for {key!r}: {msg}" if key else msg
