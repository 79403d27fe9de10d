"""Which checkpoint a run reports (``eval.select``), decided while it trains and kept in its checkpoint.

* ``last`` — the last epoch.
* ``val_best`` (protocol ``clean``) — each of the last ``eval.select_epochs`` epochs is scored on the
  *validation* split (clean definitions, the dataset's headline metric); the best epoch's trainable
  state is kept and the test set is scored once, with it.
* ``test_last`` (protocol ``infosam``) — each of the last ``eval.select_epochs`` epochs is scored on
  the *test* set, as the public InfoSAM scripts do (``for epoch in {6..10}: val.py --split=test``).
  Every result is kept in the run; tables report the last epoch, and "best of last k (test)" — the
  epoch the public scripts allow one to pick — only where asked and labelled as such.

The history (and the best state) is part of each epoch checkpoint, written after the epoch's
evaluation, so a resumed run makes exactly the choice an uninterrupted one makes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from bench.eval.metrics import BASE_DEFINITION, metric_info

log = logging.getLogger(__name__)

RULE_TEXT = {
    "last": "last epoch",
    "val_best": "best of the last {k} epochs on the validation split",
    "test_last": "last epoch (the last {k} epochs scored on the test set, as the public scripts)",
}
BEST_OF_LAST_TEXT = "best of the last {k} epochs on the test set, as the public scripts allow"


def selection_text(rule: str, k: int) -> str:
    """The selection rule in words, for titles and captions."""
    return RULE_TEXT[rule].format(k=k)


Evaluation = tuple[list[dict[str, Any]], dict[str, dict[str, float]]]  # (per-image rows, means by definition)


@dataclass
class EpochSelector:
    """Scores candidate epochs and remembers what the rule needs.

    Attributes:
        rule: ``last`` | ``val_best`` | ``test_last``.
        epochs: The run's number of epochs.
        k: Candidates are the last ``k`` epochs.
        metric: Headline metric key deciding "best".
        definition: Metric definition the headline is read from.
        evaluate: Scores the current model on the rule's split (validation or test).
        snapshot: The current trainable state (``TrainParts.state``), kept for the best epoch (``val_best``).
        patience: ``val_best`` only: stop training after this many scored epochs without a better one.
        on_scored: Told ``(epoch, means)`` after each candidate epoch is scored (the run's TensorBoard events).
    """

    rule: str
    epochs: int
    k: int
    metric: str
    definition: str
    evaluate: Optional[Callable[[], Evaluation]] = None
    snapshot: Optional[Callable[[], dict[str, Any]]] = None
    patience: Optional[int] = None
    on_scored: Optional[Callable[[int, dict[str, dict[str, float]]], None]] = None
    history: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    rows: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    best_state: Optional[dict[str, Any]] = None

    @property
    def candidates(self) -> list[int]:
        if self.rule == "last":
            return []
        return list(range(max(1, self.epochs - self.k + 1), self.epochs + 1))

    def score(self, means: dict[str, dict[str, float]]) -> float:
        values = means.get(self.definition, {})
        value = values[self.metric] if self.metric in values else means[BASE_DEFINITION][self.metric]
        return value if metric_info(self.metric).higher_better else -value

    @property
    def best_epoch(self) -> Optional[int]:
        if not self.history:
            return None
        return max(self.history, key=lambda e: (self.score(self.history[e]), -e))  # ties: the earlier epoch

    def stop_early(self) -> bool:
        """``val_best`` with ``patience``: no better validation score in the last ``patience`` scored epochs
        (AutoMM's early stopping, which Conv-LoRA runs with patience 10)."""
        if self.rule != "val_best" or not self.patience or not self.history:
            return False
        best = self.best_epoch
        assert best is not None
        return sum(1 for e in self.history if e > best) >= self.patience

    def after_epoch(self, epoch: int) -> None:
        """Called by the trainer after each epoch, before the epoch checkpoint is written."""
        if epoch not in self.candidates or epoch in self.history:
            return
        assert self.evaluate is not None
        rows, means = self.evaluate()
        self.history[epoch] = means
        if self.rule == "test_last":
            self.rows[epoch] = rows
        elif self.best_epoch == epoch:
            assert self.snapshot is not None
            self.best_state = self.snapshot()
        if self.on_scored is not None:
            self.on_scored(epoch, means)
        split = "test" if self.rule == "test_last" else "val"
        log.info("epoch %d on %s: %s = %.4f", epoch, split, self.metric, abs(self.score(means)))

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "rows": self.rows, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = {int(e): v for e, v in state.get("history", {}).items()}
        self.rows = {int(e): v for e, v in state.get("rows", {}).items()}
        self.best_state = state.get("best_state")

    def record(self, text: str) -> dict[str, Any]:
        """What ``metrics.json`` says about the choice."""
        return {
            "rule": self.rule,
            "text": text,
            "metric": self.metric,
            "definition": self.definition,
            "candidates": self.candidates,
            "best_epoch": self.best_epoch,
            "reported_epoch": self.best_epoch if self.rule == "val_best" else self.epochs,
            "split": {"val_best": "val", "test_last": "test"}.get(self.rule),
            "by_epoch": {str(e): m for e, m in sorted(self.history.items())},
            "stopped_early_after": max(self.history) if self.stop_early() else None,
        }
