"""A sweep: ``sweeps/<name>.yaml`` and the command line's overrides on the schema (:mod:`bench.config`), expanded
into runs (methods × datasets × seeds × grid) with their stable hashes.

Order of precedence: dataclass defaults ← the protocol's preset (:mod:`bench.config.protocols`) ← the sweep file ←
the command line. A protocol's per-dataset values (by the dataset's family, from the dataset registry) fill
in what neither the sweep file nor the command line set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from bench.config import (
    RUN_KEYS,
    BenchConfig,
    ConfigError,
    RunConfig,
    check_values,
    config_digest,
    grid_points,
    merge_checked,
    method_entry,
    to_dict,
)
from bench.config.overrides import Change, parse_changes
from bench.config.protocols import get_protocol
from bench.contracts.dataset import dataset_info
from bench.runs.inputs import input_digests

SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"
log = logging.getLogger(__name__)


def available_sweeps() -> list[str]:
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


def load_config(overrides: list[str] | None = None) -> BenchConfig:
    """Build the sweep config: schema defaults, then ``sweeps/<sweep>.yaml``, then overrides (in Hydra's
    override grammar, :mod:`bench.config.overrides`)."""
    changes = parse_changes(overrides or [])
    base = OmegaConf.structured(BenchConfig)
    sweep = str(_single(changes, "sweep", base.sweep))
    path = SWEEPS_DIR / f"{sweep}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown sweep {sweep!r}; valid choices: {', '.join(available_sweeps())}")
    data = read_sweep_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a sweep file must be a mapping of keys to values")
    data.pop("description", None)
    protocol = _single(changes, "protocol", None, pop=False) or data.get("protocol") or base.protocol
    cfg = merge_checked(base, protocol_preset(str(protocol)), f"protocol {protocol}")
    cfg = merge_checked(cfg, data, str(path))
    cfg.sweep = sweep
    explicit = set(_dotted(data))
    for change in changes:
        if change.action == "delete":
            cfg = _delete(cfg, base, change)
            explicit.add(change.key)
            continue
        if change.action == "add" and OmegaConf.select(cfg, change.key, default=_UNSET) is not _UNSET:
            raise ConfigError(f"override {change.text}: {change.key} is already set; use {change.key}=... to change it")
        dotted = OmegaConf.create(_shorthand(base, change))
        cfg = merge_checked(cfg, dotted, f"override {change.text}")
        explicit |= set(_dotted(OmegaConf.to_container(dotted)))
    cfg.explicit_keys = sorted(explicit)
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, BenchConfig)
    check_values(obj)
    for key in ("methods", "datasets", "seeds"):
        setattr(obj, key, _unique(key, getattr(obj, key)))
    return obj


_UNSET = object()


def _single(changes: list[Change], key: str, default: Any, pop: bool = True) -> Any:
    """The value of the last ``key=value`` among ``changes`` (removed from them when ``pop``)."""
    found = [c for c in changes if c.key == key]
    if not found:
        return default
    if found[-1].sweep or found[-1].action != "set":
        raise ConfigError(f"override {found[-1].text}: {key} takes one name")
    if pop:
        changes[:] = [c for c in changes if c.key != key]
    return found[-1].value


def _nested(key: str, value: Any) -> dict[str, Any]:
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def _shorthand(base: DictConfig, change: Change) -> dict[str, Any]:
    """The nested mapping one ``key=value`` (or sweep) sets, with the suite's shorthands."""
    key, value = change.key, change.value
    is_list = isinstance(OmegaConf.select(base, key, default=None), ListConfig)
    if change.sweep and not is_list:  # a sweep over a scalar key is a grid axis
        return {"grid": {key: value}}
    if is_list and not isinstance(value, list):
        value = [value]  # a scalar for a list key: a one-element list (methods=adapter)
    if isinstance(value, str):
        if key == "launcher":  # shorthand: launcher=inline
            return {"launcher": {"name": value}}
        if key == "backbone":  # a new backbone: its own size and weights
            return {"backbone": {"name": value, "checkpoint": None, "img_size": None}}
    if key == "metrics":  # shorthand: metrics=clean shows the clean definitions in the report
        return {"report": {"metrics": value}}
    if key == "device":  # shorthand: device=cuda runs every run of the sweep on that device
        return {"train": {"device": value}}
    return _nested(key, value)


def _delete(cfg: DictConfig, base: DictConfig, change: Change) -> DictConfig:
    """``~key``: back to the schema default, or out of a free-form dict (``~peft.r``)."""
    key = change.key
    default = OmegaConf.select(base, key, default=_UNSET)
    if default is not _UNSET:
        OmegaConf.update(cfg, key, default, merge=False)
        return cfg
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    if not isinstance(parent, DictConfig) or leaf not in parent:
        raise ConfigError(f"override {change.text}: {key} is not set, nothing to remove")
    with open_dict(parent):
        del parent[leaf]
    return cfg


def _dotted(data: Any, prefix: str = "") -> list[str]:
    """The dotted leaf keys of a nested mapping (``{"train": {"lr": 1}}`` → ``["train.lr"]``)."""
    if not isinstance(data, dict) or (prefix and not data):
        return [prefix] if prefix else []
    return [k for key, value in data.items() for k in _dotted(value, f"{prefix}.{key}" if prefix else str(key))]


def read_sweep_file(path: Path) -> Any:
    """The parsed YAML of a sweep file; a syntax error is one line naming the file and line."""
    try:
        with path.open() as fh:
            return yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None


def _unique(key: str, values: list[Any]) -> list[Any]:
    """``values`` without repeated entries (a run listed twice is one run), with a warning."""
    out: list[Any] = []
    for value in values:
        if value in out:
            log.warning("%s lists %r more than once; it runs once", key, value)
        else:
            out.append(value)
    return out


def protocol_preset(name: str) -> dict[str, Any]:
    """The nested config defaults of protocol ``name`` (``protocol`` itself included)."""
    nested: dict[str, Any] = {"protocol": name}
    for dotted, value in get_protocol(name).preset.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def run_configs(cfg: BenchConfig) -> list[RunConfig]:
    """Expand a sweep into its runs: methods × datasets × seeds × grid, in that order."""
    whole = to_dict(cfg)
    base = OmegaConf.merge(OmegaConf.structured(RunConfig), {k: whole[k] for k in RUN_KEYS})
    points = grid_points(cfg)
    hosted = tested_by(cfg)
    runs = []
    for entry in cfg.methods:
        method, label, extra = method_entry(entry)
        if "protocol" in extra:
            raise ConfigError(f"methods entry {entry!r}: a row cannot change the protocol (set it for the whole sweep)")
        for dataset in trained_datasets(cfg):
            per_dataset = protocol_dataset_values(cfg, dataset)
            also = [d for d, host in hosted.items() if host == dataset]
            for seed in cfg.seeds:
                for point in points:
                    variant = ",".join([label] * bool(label) + [f"{k}={v}" for k, v in point.items()])
                    node = OmegaConf.merge(
                        base, {"method": method, "dataset": dataset, "seed": seed, "variant": variant}
                    )
                    for key, value in {**per_dataset, **extra, **point}.items():
                        node = merge_checked(node, OmegaConf.from_dotlist([f"{key}={value}"]), f"grid {key}")
                    if also:
                        node = merge_checked(node, OmegaConf.create({"eval": {"also_test": also}}), "test_sets")
                    obj = OmegaConf.to_object(node)
                    assert isinstance(obj, RunConfig)
                    check_values(obj)  # a grid point or a row's overrides may set a value out of range
                    runs.append(obj)
    return _unique_runs(runs)


def tested_by(cfg: BenchConfig) -> dict[str, str]:
    """Test set → the dataset whose runs score it (:attr:`BenchConfig.test_sets`), for the test sets in the sweep's
    ``datasets`` hosted by another dataset there: those get no training of their own."""
    hosted: dict[str, str] = {}
    if "eval.also_test" in cfg.explicit_keys:  # set by hand: it says which runs score which test sets
        return hosted
    for host, extra in cfg.test_sets.items():
        if host not in cfg.datasets:
            continue
        for dataset in extra:
            if dataset == host:
                raise ConfigError(f"test_sets.{host}: a dataset is always tested on itself; list other test sets only")
            if dataset in hosted and hosted[dataset] != host:
                raise ConfigError(f"test_sets: {dataset} is tested by both {hosted[dataset]} and {host}; choose one")
            if dataset in cfg.datasets:
                hosted[dataset] = host
    if set(hosted) & set(hosted.values()):
        both = sorted(set(hosted) & set(hosted.values()))
        raise ConfigError(f"test_sets: {', '.join(both)} both host and are hosted; a chain of test sets is not allowed")
    return hosted


def trained_datasets(cfg: BenchConfig) -> list[str]:
    """The sweep's datasets that get runs of their own: ``datasets`` minus the test sets another dataset's runs
    score (:func:`tested_by`)."""
    hosted = tested_by(cfg)
    return [d for d in cfg.datasets if d not in hosted]


@dataclass(frozen=True)
class Sweep:
    """A sweep resolved once per command: its config and its runs (:func:`run_configs`, in order).

    A command resolves it with :func:`resolve_sweep` and hands it on (validation, launcher, report, status),
    so one command expands the sweep file once (~40 ms a run with OmegaConf)."""

    cfg: BenchConfig
    runs: list[RunConfig]


def resolve_sweep(cfg: BenchConfig) -> Sweep:
    """The sweep of ``cfg`` with its runs: the one place a command expands the sweep."""
    return Sweep(cfg, run_configs(cfg))


def sweep_runs(cfg: BenchConfig, runs: Optional[list[RunConfig]] = None) -> list[RunConfig]:
    """``runs`` when a caller handed them on, else the sweep's runs resolved now (:func:`resolve_sweep`)."""
    return runs if runs is not None else resolve_sweep(cfg).runs


def _unique_runs(runs: list[RunConfig]) -> list[RunConfig]:
    """``runs`` without repeats: two spellings of one run (``methods=[adapter, {name: adapter}]``, a grid axis
    ``train.lr=1e-4,1e-4``) expand to equal configs, i.e. one run directory; it runs and counts once."""
    seen: set[str] = set()
    out = []
    for run in runs:
        digest = config_digest(to_dict(run))
        if digest in seen:
            log.warning("the sweep lists run %s %s s%d %s more than once; it runs once",
                        run.dataset, run.method, run.seed, run.variant or "")  # fmt: skip
            continue
        seen.add(digest)
        out.append(run)
    return out


def run_count(cfg: BenchConfig) -> int:
    """``len(run_configs(cfg))`` without building the runs (methods × datasets × seeds × grid points): what
    ``list`` shows for every sweep; building them all takes OmegaConf ~40 ms a run. Repeats that only the
    built configs reveal (two spellings of one row) are counted here and run once."""
    return len(cfg.methods) * len(trained_datasets(cfg)) * len(cfg.seeds) * len(grid_points(cfg))


def protocol_dataset_values(cfg: "BenchConfig", dataset: str) -> dict[str, Any]:
    """The protocol's per-dataset values for ``dataset`` (by its family), minus the keys the sweep file or
    the command line set (:attr:`BenchConfig.explicit_keys`) and, on a dataset with its own validation split
    (:attr:`DatasetInfo.own_val`), ``data.hold_out_val``."""
    table = get_protocol(cfg.protocol).dataset_values
    if not table:
        return {}
    info = dataset_info(dataset)
    values = {**table.get("*", {}), **table.get(info.family, {})}
    if info.own_val:  # data.hold_out_val does not apply to a dataset with its own validation split
        values.pop("data.hold_out_val", None)
    return {k: v for k, v in values.items() if k not in cfg.explicit_keys}


def run_hash(run: RunConfig, recorded: Optional[dict[str, str]] = None) -> str:
    """A stable 10-hex-digit hash of everything in ``run`` that can change its result, including the
    SHA-256 of each input file that exists (:mod:`bench.runs.inputs`; ``recorded`` digests stand in for absent
    files). A run without input files hashes its config alone."""
    data = to_dict(run)
    digests = {k: v for k, v in input_digests(run, recorded).items() if v}
    if digests:
        data["inputs"] = digests
    return config_digest(data)


def run_name(run: RunConfig) -> str:
    return f"{run.dataset}__{run.method}__s{run.seed}__{run_hash(run)}"
