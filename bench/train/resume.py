"""Resuming a run from its ``checkpoint.pt``: the file must load, have the trainer's layout, fit the model and
belong to this run.

* A damaged checkpoint (truncated, garbage, empty, wrong keys or shapes) is moved aside as
  ``checkpoint.pt.corrupt`` with a warning naming it, and the run restarts from scratch.
* A checkpoint of another run (its recorded run name differs: another config copied in) is refused with
  :class:`ForeignCheckpointError`; it is never silently resumed or overwritten.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Optional

import torch

from bench.fileio import move_aside

log = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("epoch", "parts", "optimizer", "scheduler", "log")


class ForeignCheckpointError(RuntimeError):
    """``checkpoint.pt`` records another run's name."""


def read_checkpoint(path: Path, run_id: Optional[str]) -> Optional[dict[str, Any]]:
    """The checkpoint's payload; None when there is none or it was damaged (then moved aside)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - torch/pickle/zip raise many types for a damaged file
        move_aside(path, f"does not load: {_describe(err)}")
        return None
    missing = [k for k in CHECKPOINT_KEYS if k not in state] if isinstance(state, dict) else list(CHECKPOINT_KEYS)
    if missing or not isinstance(state.get("epoch"), int):
        move_aside(path, f"not a training checkpoint (missing {', '.join(missing) or 'an integer epoch'})")
        return None
    owner = state.get("run")
    if run_id is not None and owner is not None and owner != run_id:
        raise ForeignCheckpointError(
            f"{path} belongs to run {owner}, not {run_id}; delete it to restart this run from scratch"
        )
    if owner is None:
        log.warning("%s records no run name (older code); resuming from it", path)
    return state


def resume(
    path: Path, run_id: Optional[str], parts: Any, optimizer: Any, scheduler: Any, selector: Any = None
) -> Optional[dict[str, Any]]:
    """Load ``path`` into the trainer's objects; returns its payload, or None (nothing to resume: fresh start).

    A checkpoint that loads but does not fit (other parameter names or shapes, another optimizer) is moved
    aside and every object is put back as it was, so the run starts from scratch.
    """
    state = read_checkpoint(path, run_id)
    if state is None:
        return None
    before = copy.deepcopy((parts.state(), optimizer.state_dict(), scheduler.state_dict()))
    try:
        parts.load_state(state["parts"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if selector is not None:
            selector.load_state_dict(state.get("selection", {}))
    except (KeyError, IndexError, RuntimeError, ValueError, TypeError, AttributeError) as err:
        parts.load_state(before[0])
        optimizer.load_state_dict(before[1])
        scheduler.load_state_dict(before[2])
        if selector is not None:
            selector.load_state_dict({})
        move_aside(path, f"does not fit this run: {_describe(err)}")
        return None
    return state


def _describe(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{err.__class__.__name__}: {lines[0][:200]}" if lines else err.__class__.__name__
