"""A run's TensorBoard event files (``train.tensorboard``), so ``tensorboard --logdir runs`` shows a sweep live.

``<run>/tb/`` holds, against the global optimizer step ``(epoch - 1) * steps_per_epoch + step``:

* ``loss/total`` and ``loss/<term>`` (every loss term of the trainer's log row) and ``train/lr``, for each
  logged step: the rows of ``train_log.csv``;
* ``<split>/<metric>`` for each epoch the checkpoint choice scored (``val`` under ``val_best``: the selection
  metric only, as it is scored; ``test`` under ``test_last``: every metric): the selector's means under its
  definition (the clean ones where it defines none), at the epoch's last step;
* at the end, ``headline/<metric>`` (``metrics.json`` ``metrics``) and ``masks/<name>``, one image per kept
  mask (image | ground truth | prediction, ``bench/data/masks.py``), at the last step.

Only rank 0 writes. Each attempt of a run appends an event file whose purge step is its first logged step, so
TensorBoard drops what an interrupted attempt wrote after its last checkpoint and a resumed run has no step
twice. Events are flushed at every log row. The key never changes a score (not in the run hash); without the
``tensorboard`` package the run goes on with a warning and writes none. (The module is not named
``tensorboard`` so that it never shadows the package.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

from bench.data.masks import read_masks
from bench.eval.metrics import BASE_DEFINITION
from bench.eval.selection import EpochSelector

log = logging.getLogger(__name__)

TB_DIR = "tb"
# keys of the trainer's log row (and of what on_log adds to it) that are not loss terms
NOT_TERMS = ("epoch", "step", "lr", "epochs", "steps")
_OPEN: dict[Path, Any] = {}  # run folder -> its writer in this process (a failed attempt's is closed on retry)


def _writer_class() -> Optional[type]:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


class RunEvents:
    """The TensorBoard writer of one run attempt, opened at its first event (a no-op when disabled).

    Args:
        run_path: The run's directory; events go to ``<run_path>/tb/``.
        enabled: ``train.tensorboard`` and rank 0.
    """

    def __init__(self, run_path: str | Path, enabled: bool) -> None:
        self.folder = Path(run_path) / TB_DIR
        self.writer_cls = _writer_class() if enabled else None
        if enabled and self.writer_cls is None:
            log.warning("train.tensorboard: the tensorboard package is not installed; no event files are written")
        self.writer: Any = None
        self.steps_per_epoch: Optional[int] = None

    def _open(self, purge_step: Optional[int]) -> Any:
        if self.writer is None:
            stale = _OPEN.pop(self.folder, None)
            if stale is not None:
                stale.close()
            assert self.writer_cls is not None
            self.writer = self.writer_cls(log_dir=str(self.folder), purge_step=purge_step)
            _OPEN[self.folder] = self.writer
        return self.writer

    def log_row(self, row: dict[str, Any]) -> None:
        """The trainer's log row (``on_log``): its loss, loss terms and learning rate at its global step."""
        if self.writer_cls is None:
            return
        self.steps_per_epoch = int(row["steps"])
        step = (int(row["epoch"]) - 1) * self.steps_per_epoch + int(row["step"])
        writer = self._open(purge_step=step)  # this attempt's first step: later events of an earlier one go
        writer.add_scalar("loss/total", row["loss"], step)
        for key, value in row.items():
            if key not in NOT_TERMS and key != "loss":
                writer.add_scalar(f"loss/{key}", value, step)
        writer.add_scalar("train/lr", row["lr"], step)
        writer.flush()

    def scorer(self, selector: EpochSelector) -> Callable[[int, dict[str, dict[str, float]]], None]:
        """The selector's ``on_scored``: each scored epoch's means under its definition, at the epoch's last step."""

        def scored(epoch: int, means: dict[str, dict[str, float]]) -> None:
            if self.writer_cls is None or self.steps_per_epoch is None:
                return
            split = "test" if selector.rule == "test_last" else "val"
            writer = self._open(purge_step=None)
            # what was scored (a validation candidate may be one metric only), its definition's values first
            for metric, value in {**means.get(BASE_DEFINITION, {}), **means.get(selector.definition, {})}.items():
                writer.add_scalar(f"{split}/{metric}", value, epoch * self.steps_per_epoch)
            writer.flush()

        return scored

    def finish(self, run_path: str | Path, metrics: dict[str, float], log_rows: list[dict[str, Any]]) -> None:
        """The headline metrics and the kept masks at the last step (of ``log_rows``, 0 untrained); closes."""
        if self.writer_cls is None:
            return
        step = 0
        if log_rows:
            per_epoch = self.steps_per_epoch or max(int(r["step"]) for r in log_rows)  # the last step is logged
            step = (int(log_rows[-1]["epoch"]) - 1) * per_epoch + int(log_rows[-1]["step"])
        writer = self._open(purge_step=None)  # nothing after metrics.json is ever written twice
        for metric, value in metrics.items():
            writer.add_scalar(f"headline/{metric}", value, step)
        index = read_masks(run_path)
        for entry in index["images"] if index is not None else []:
            writer.add_image(f"masks/{entry['name']}", mask_grid(entry), step, dataformats="HWC")
        writer.close()
        _OPEN.pop(self.folder, None)
        self.writer = None


def mask_grid(entry: dict[str, Any]) -> np.ndarray:
    """``(H, 3W, 3)`` uint8: a kept image, its ground truth and the prediction side by side (``read_masks`` entry)."""
    panels = [np.asarray(Image.open(entry[key]).convert("RGB")) for key in ("image", "gt", "pred")]
    return np.concatenate(panels, axis=1)
