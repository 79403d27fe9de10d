"""Checkpoint loading for backbones: strict, ``weights_only=True``, with the file's SHA-256 recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from bench.fileio import sha256_file


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or for another architecture."""


def attach_weights(
    model: nn.Module, path: str | Path, key: Optional[str] = None, into: Optional[nn.Module] = None
) -> str:
    """Load ``path`` into ``into`` (default ``model``) and record on ``model`` where its weights came from
    (``weights_id`` = the first 16 hex digits of the file's SHA-256, ``checkpoint_sha256``, ``checkpoint_path``)."""
    load_checkpoint(into if into is not None else model, path, key=key)
    digest = sha256_file(path)
    model.weights_id = digest[:16]
    model.checkpoint_sha256 = digest
    model.checkpoint_path = str(path)
    return digest


def load_checkpoint(model: nn.Module, path: str | Path, key: Optional[str] = None) -> None:
    """Load a state dict with ``weights_only=True`` and strict key checks.

    Args:
        model: Module whose ``state_dict`` keys the file must match exactly.
        path: Checkpoint file.
        key: Optional top-level key holding the state dict (SAM2 files use ``"model"``); when None,
            a dict with a single ``"model"`` or ``"state_dict"`` entry is unwrapped too.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(f"cannot read checkpoint {path}: {err.__class__.__name__}: {err}") from None
    if key is not None:
        if key not in state:
            raise CheckpointError(f"checkpoint {path} has no {key!r} entry (keys: {list(state)[:5]})")
        state = state[key]
    elif isinstance(state, dict) and len(state) <= 3:
        for wrapper in ("model", "state_dict"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit {model.__class__.__name__}: "
            f"{len(missing)} missing key(s) {missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} has tensors of the wrong shape: {err}") from None
