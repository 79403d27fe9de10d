"""What the runs did, read from their records, where it is not what the sweep's protocol asks for.

A run asked for ``eval.select=val_best`` on a dataset without validation images reports its last epoch
(``metrics.json`` ``selection.rule: last``, ``selection.split: null``); a row may set its own rule; a run from
another protocol carries other metric definitions (``metric_definition``). The caption names those runs
instead of stating the protocol's rule for all of them. Records without a ``selection`` block (from before it
was recorded) count as following the protocol.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from bench.config import RunConfig, row_label
from bench.eval.selection import RULE_TEXT, selection_text

LISTED = 12  # runs named in a caption per differing rule; the rest are counted


def run_words(run: RunConfig) -> str:
    """A run as captions name it: ``folder lora s0``."""
    return f"{run.dataset} {row_label(run)} s{run.seed}"


def used_rule(record: dict[str, Any], run: RunConfig) -> Optional[str]:
    """The checkpoint rule a complete run used, in words, or None where its record does not say."""
    selection = record.get("selection")
    if not isinstance(selection, dict) or selection.get("rule") not in RULE_TEXT:
        return None
    rule = selection["rule"]
    text = selection_text(rule, run.eval.select_epochs)
    if rule == "last" and run.eval.select == "val_best" and not selection.get("split"):
        text += " (no validation split)"  # the runner's fallback: nothing to select on
    return text


def checkpoint_words(
    protocol_text: str, named: Sequence[tuple[RunConfig, str]], records: dict[str, dict[str, Any]]
) -> str:
    """``protocol_text`` when every complete run used it; else which rule which runs used."""
    used: dict[str, list[str]] = {}
    for run, name in named:
        if name not in records:
            continue
        text = used_rule(records[name], run) or protocol_text
        used.setdefault(text, []).append(run_words(run))
    return _by_runs(protocol_text, used)


def definition_words(
    protocol_definition: str, named: Sequence[tuple[RunConfig, str]], records: dict[str, dict[str, Any]]
) -> str:
    """Where the table shows each run's own definitions (no ``report.metrics``): the runs whose
    ``metric_definition`` is not the protocol's, as ``; <def> metric definitions for N runs: ...``, else ''."""
    used: dict[str, list[str]] = {}
    for run, name in named:
        if name in records:
            definition = records[name].get("metric_definition") or protocol_definition
            used.setdefault(definition, []).append(run_words(run))
    if set(used) <= {protocol_definition}:
        return ""
    return "; " + "; ".join(
        f"{d} metric definitions for {_listed(runs)}" for d, runs in used.items() if d != protocol_definition
    )


def _by_runs(protocol_text: str, used: dict[str, list[str]]) -> str:
    others = {text: runs for text, runs in used.items() if text != protocol_text}
    if not others:
        return protocol_text
    kept = len(used.get(protocol_text, []))
    parts = [f"{text} for {_listed(runs, everyone=not kept and len(others) == 1)}" for text, runs in others.items()]
    if kept:
        return f"{protocol_text} ({kept} runs); " + "; ".join(parts)
    return "; ".join(parts) + f" (the protocol's: {protocol_text})"


def _listed(runs: list[str], everyone: bool = False) -> str:
    count = f"all {len(runs)} runs" if everyone else f"{len(runs)} run{'s' * (len(runs) != 1)}"
    names = ", ".join(runs[:LISTED]) + (f", and {len(runs) - LISTED} more" if len(runs) > LISTED else "")
    return f"{count}: {names}"
