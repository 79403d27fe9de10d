"""The name a report's files carry: the sweep's name for the sweep file's own runs, a name of its own otherwise.

``python run_benchmark.py datasets=[folder] ...`` is the ``demo`` sweep with other runs; its report must not
overwrite ``demo.md``. :func:`report_name` compares the sweep's runs with the runs of the sweep file alone
(``sweep=NAME`` and nothing else): the same runs keep the sweep's name (``launcher.*``, ``report.*``,
``device=``, ``runs_dir=`` change no run), other runs get ``<sweep>-<8 hex digits>``, a digest of the run
list (each run's config digest and row label), so the same overrides find the same name again and two
different run lists never share one. ``report.name=NAME`` chooses the name by hand.

The sweep's name itself (``cfg.sweep``) does not change: the paper comparison and the figures that apply to one
sweep (``fig7``, ...) key on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from functools import lru_cache
from typing import Optional

from bench.config import RUN_KEYS, UNHASHED_KEYS, BenchConfig, ConfigError, RunConfig, config_digest, to_dict
from bench.runs.sweep import load_config, sweep_runs

log = logging.getLogger(__name__)

DIGITS = 8  # hex digits of the run-list digest in a report name


def run_list(runs: list[RunConfig]) -> list[tuple[str, str]]:
    """The runs as (config digest, row variant) pairs, sorted: what makes two sweeps the same report."""
    return sorted({(config_digest(to_dict(r)), r.variant or "") for r in runs})


def report_name(cfg: BenchConfig, runs: Optional[list[RunConfig]] = None) -> str:
    """The stem of the report files of ``cfg`` (``<stem>.md``, ``<stem>_qualitative.png``, ...).

    ``runs``: the sweep's runs when the caller resolved them, else resolved here (only when the name needs
    them)."""
    if cfg.report.name:
        if "/" in cfg.report.name or cfg.report.name.startswith("."):
            raise ConfigError(f"report.name={cfg.report.name!r}: a file name, without '/' and not starting with '.'")
        return cfg.report.name
    if _what_makes_runs(cfg) == _sweep_file_inputs(cfg.sweep):
        return cfg.sweep
    text = json.dumps(run_list(sweep_runs(cfg, runs)), separators=(",", ":"))
    return f"{cfg.sweep}-{hashlib.sha256(text.encode()).hexdigest()[:DIGITS]}"


def with_report_name(cfg: BenchConfig, name: str) -> BenchConfig:
    """``cfg`` with ``report.name`` set to ``name`` (what the figures name their files by,
    :func:`reports.figures.stem_of`)."""
    return replace(cfg, report=replace(cfg.report, name=name))


def _what_makes_runs(cfg: BenchConfig) -> str:
    """A digest of everything :func:`bench.runs.sweep.run_configs` expands ``cfg`` from, without the keys that
    change no run (:data:`UNHASHED_KEYS`: device, workers, cache paths; and the sweep-only launcher, report,
    runs_dir): equal digests, equal runs. Faster than expanding the sweep file a second time (~80 ms a run)."""
    whole = to_dict(cfg)
    run_part = config_digest({k: whole[k] for k in RUN_KEYS})
    explicit = sorted(k for k in cfg.explicit_keys if k.split(".")[0] in RUN_KEYS and k not in UNHASHED_KEYS)
    shape = {k: whole[k] for k in ("methods", "datasets", "seeds", "grid", "test_sets")}
    return json.dumps([run_part, explicit, shape], sort_keys=True, default=str)


@lru_cache(maxsize=8)
def _sweep_file_inputs(sweep: str) -> Optional[str]:
    """:func:`_what_makes_runs` of the sweep file without overrides; None when it does not load on its own."""
    try:
        return _what_makes_runs(load_config([f"sweep={sweep}"]))
    except ConfigError as err:  # e.g. a sweep file that needs a data root set on the command line
        log.debug("sweep %s does not load on its own (%s): its reports get names of their own", sweep, err)
        return None
