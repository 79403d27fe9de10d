"""A run's config as plain data: the dict and YAML every run directory stores, the dict read back into a
checked :class:`~bench.config.schema.RunConfig`, and the digest of the keys that decide its result.

The digest is the SHA-256 of the sorted JSON of :func:`to_dict` without :data:`UNHASHED_KEYS`; it names the
run's directory, so anything that changes it (a default, a key's spelling) re-runs every sweep.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml
from omegaconf import OmegaConf

from bench.config.checks import check_values, merge_checked
from bench.config.schema import RunConfig

# Keys that change how a run executes, not what it computes: left out of the run hash.
UNHASHED_KEYS = (
    "variant",
    "train.num_workers",
    "train.log_every",
    "train.device",
    "train.channels_last",
    "train.compile",
    "train.compile_backend",
    "train.grad_checkpoint",
    "train.grad_accumulation",
    "data.cache_dir",
    "data.root",
    "data.encoder_cache",
    "backbone.checkpoints_dir",
    "eval.keep_masks",
)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The nested dict of a schema dataclass (a run or a sweep), in the schema's field order."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def config_digest(data: dict[str, Any]) -> str:
    """10 hex digits of the SHA-256 of a run's config dict without :data:`UNHASHED_KEYS` (modified in place)."""
    for dotted in UNHASHED_KEYS:
        parent, _, leaf = dotted.rpartition(".")
        node = data
        for part in parent.split(".") if parent else []:
            node = node[part]
        node.pop(leaf, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_from_dict(data: dict[str, Any]) -> RunConfig:
    """A run's config from its dict (a run directory's ``config.yaml``, an export): unknown keys, wrong types
    and values outside the schema's rules are a :class:`~bench.config.schema.ConfigError`."""
    obj = OmegaConf.to_object(merge_checked(OmegaConf.structured(RunConfig), data, "run config"))
    assert isinstance(obj, RunConfig)
    check_values(obj)
    return obj


def dump_yaml(cfg: Any) -> str:
    """The YAML of :func:`to_dict` (field order kept)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
