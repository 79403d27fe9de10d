"""A sweep's table rows: ``methods`` entries (a name, or a name with a label and its own overrides), the
grid's points, and the label a run's row carries in tables."""

from __future__ import annotations

from typing import Any

from bench.config.schema import BenchConfig, ConfigError, RunConfig


def method_entry(entry: Any) -> tuple[str, str, dict[str, Any]]:
    """(method name, row label, overrides) of one ``methods`` entry."""
    if isinstance(entry, str):
        return entry, "", {}
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) and set(entry) <= {"name", "label", "set"}:
        extra = dict(entry.get("set") or {})
        label = str(entry.get("label") or ",".join(f"{k}={v}" for k, v in extra.items()))
        return entry["name"], label, extra
    raise ConfigError(f"bad methods entry {entry!r}: use a name or {{name: ..., label: ..., set: {{key: value}}}}")


def grid_points(cfg: BenchConfig) -> list[dict[str, Any]]:
    """The crossed ``grid`` of a sweep: one ``{dotted key: value}`` per point (``[{}]`` without a grid)."""
    points: list[dict[str, Any]] = [{}]
    for key, values in cfg.grid.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def row_label(run: RunConfig) -> str:
    """How a run's method appears in tables: the method name, plus its grid point if any."""
    return f"{run.method} [{run.variant}]" if run.variant else run.method
