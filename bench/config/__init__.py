"""Configuration: what a run *is* before anything is built.

Owns the typed schema with each field's default and fixed value rule (:mod:`bench.config.schema`), the one
walker that enforces those rules and the merges that name a bad key (:mod:`bench.config.checks`), a run's
config as dict, YAML and digest (:mod:`bench.config.digest`), a sweep's method entries, grid points and row
labels (:mod:`bench.config.rows`), the override grammar (:mod:`bench.config.overrides`) and the
:class:`~bench.config.protocols.Protocol` type with its registry (one file each in ``protocols/``).
Imports only the standard library, OmegaConf, PyYAML, Hydra's override parser and the foundation modules of
``bench/`` (registry, discovery, fileio, logs).
The public names are re-exported here: ``from bench.config import RunConfig, BenchConfig, ConfigError,
to_dict, row_label ...``.
"""

from bench.config.checks import check_values, merge_checked
from bench.config.digest import UNHASHED_KEYS, config_digest, dump_yaml, run_from_dict, to_dict
from bench.config.rows import grid_points, method_entry, row_label
from bench.config.schema import (
    RUN_KEYS,
    BackboneConfig,
    BenchConfig,
    CocoDataConfig,
    ConfigError,
    DataConfig,
    EvalConfig,
    FolderDataConfig,
    LauncherConfig,
    Range,
    ReportConfig,
    RunConfig,
    SlurmConfig,
    SynthConfig,
    TaskConfig,
    TeacherConfig,
    TrainConfig,
)

__all__ = [
    "RUN_KEYS",
    "UNHASHED_KEYS",
    "BackboneConfig",
    "BenchConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "CocoDataConfig",
    "FolderDataConfig",
    "LauncherConfig",
    "Range",
    "ReportConfig",
    "RunConfig",
    "SlurmConfig",
    "SynthConfig",
    "TaskConfig",
    "TeacherConfig",
    "TrainConfig",
    "check_values",
    "config_digest",
    "dump_yaml",
    "grid_points",
    "merge_checked",
    "method_entry",
    "row_label",
    "run_from_dict",
    "to_dict",
]
