"""Where a run's (and a sweep's) time goes: named phases with their wall seconds.

A run records its phases in ``metrics.json`` (``phases``); the sweep command adds its own (report tables,
figures) and prints the breakdown (:func:`breakdown`). The phases of one process are kept in one
:class:`PhaseClock`, :data:`CLOCK`, that the code measuring a phase adds to with ``with CLOCK.phase(name):``.

The scoring thread of an evaluation (:func:`bench.eval.evaluate.evaluate`) runs beside the model, so its
time (``metrics``) overlaps ``val_selection`` and ``test_eval``; it is kept apart, per definition
(``metrics.<definition>``), and not added into the total.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional

# phase -> what it covers, in the order of a breakdown
PHASES: dict[str, str] = {
    "imports": "imports (interpreter start to the first run of a job process)",
    "data": "data generation and loading",
    "build": "model build (weights, PEFT modules, encoder caches set up)",
    "train": "training steps (epoch checkpoints included)",
    "val_selection": "validation selection (scoring the candidate epochs)",
    "test_eval": "test evaluation (model passes, per-image rows, kept masks)",
    "report_tables": "report tables (Markdown, LaTeX, CSV, HTML page)",
    "figures": "report figures (PNG + PDF)",
}
OVERLAPPING = "metrics"  # the scoring thread's own time, per definition: inside val_selection / test_eval


class PhaseClock:
    """Seconds per phase; ``phase(name)`` adds the wall time of its block (thread-safe, nesting subtracts)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._open = threading.local()  # this thread's enclosing phases

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the block's wall time to ``name`` and take it off the enclosing phase of this thread (a
        validation pass inside training counts as ``val_selection``, not twice)."""
        stack = self._open.__dict__.setdefault("stack", [])
        start = time.perf_counter()
        stack.append(name)
        try:
            yield
        finally:
            stack.pop()
            elapsed = time.perf_counter() - start
            self.add(name, elapsed)
            if stack:
                self.add(stack[-1], -elapsed)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] += seconds

    def take(self) -> dict[str, float]:
        """The seconds so far (rounded to ms), and a fresh start."""
        with self._lock:
            out = {k: round(v, 3) for k, v in self.seconds.items()}
            self.seconds.clear()
        return out


CLOCK = PhaseClock()


def process_age() -> Optional[float]:
    """Seconds since this process started (Linux ``/proc``), or None where that is not known."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after the command name
        stat = Path("/proc/stat").read_text().splitlines()
        boot = next(int(line.split()[1]) for line in stat if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return max(0.0, time.time() - (boot + start_ticks / os.sysconf("SC_CLK_TCK")))


def summed(records: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The phases of several runs added up."""
    total: dict[str, float] = defaultdict(float)
    for phases in records:
        for name, seconds in phases.items():
            total[name] += float(seconds)
    return dict(total)


def breakdown(phases: Mapping[str, float], wall: Optional[float] = None, note: str = "") -> str:
    """The phase table: seconds and share of the summed total, the overlapping scoring time apart."""
    main = {k: phases.get(k, 0.0) for k in PHASES}
    main.update({k: v for k, v in phases.items() if k not in PHASES and not k.startswith(OVERLAPPING)})
    total = sum(main.values()) or 1.0
    head = "phase breakdown (seconds" + (f"; {note}" if note else "") + ")"
    lines = [head]
    for name, seconds in main.items():
        lines.append(f"  {name:<14} {seconds:8.1f}  {100 * seconds / total:5.1f} %  {PHASES.get(name, '')}")
    lines.append(f"  {'total':<14} {sum(main.values()):8.1f}" + (f"   wall time {wall:.1f} s" if wall else ""))
    scoring = {k: v for k, v in phases.items() if k.startswith(OVERLAPPING + ".")}
    if scoring:
        parts = ", ".join(f"{k.split('.', 1)[1]} {v:.1f}" for k, v in sorted(scoring.items()))
        lines.append(f"  scoring thread, inside val_selection / test_eval: {sum(scoring.values()):.1f} s ({parts})")
    return "\n".join(lines)
