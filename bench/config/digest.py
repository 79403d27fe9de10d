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
    "train.tensorboard",
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


# Keys added after runs were stored, with the default they were added at: hashed only when a run sets them to
# something else, so every stored run keeps its name (a binary run's digest is unchanged by the task keys).
HASHED_WHEN_SET: dict[str, Any] = {
    "task": {"head": "auto", "queries": None, "loss": "auto"},
    "train.weight_decay_groups": "all",
    "data.hold_out_val": True,
    "eval.also_test": [],
    "data.folder.classes": None,
    "data.folder.ignore_index": 255,
    "data.coco": {
        "root": None,
        "images": "images",
        "train": "annotations/train.json",
        "val": None,
        "test": "annotations/test.json",
        "eval_prompt": "box",
        "epochs": 10,
    },
}


def config_digest(data: dict[str, Any]) -> str:
    """10 hex digits of the SHA-256 of a run's config dict without :data:`UNHASHED_KEYS` and without the keys of
    :data:`HASHED_WHEN_SET` at their defaults (modified in place)."""
    for dotted, default in HASHED_WHEN_SET.items():
        node, leaf = _parent(data, dotted)
        if leaf in node and node[leaf] == default:
            node.pop(leaf)
    for dotted in UNHASHED_KEYS:
        node, leaf = _parent(data, dotted)
        node.pop(leaf, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _parent(data: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    """The dict holding the key ``dotted`` (``"data.folder.classes"`` → ``data["data"]["folder"]``) and its leaf."""
    parent, _, leaf = dotted.rpartition(".")
    node = data
    for part in parent.split(".") if parent else []:
        node = node[part]
    return node, leaf


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
