"""The results store: one directory per run, named by a stable hash of its resolved config.

Layout of ``runs/<dataset>__<method>__s<seed>__<hash>/``::

    config.yaml      resolved RunConfig (written first)
    run.log          the run's log (every attempt appended)
    .lock            held (flock) by the process executing the run; released when it exits or dies
    train_log.csv    one row per logged training step
    per_image.csv    one row per test image
    checkpoint.pt    last epoch's trainable state (for resume; deleted never, small)
    failed.json      present if the run failed (error message); removed when it reruns
    metrics.json     written last and atomically: its presence means the run is complete

Aggregation reads only ``metrics.json`` files.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from bench.config import RunConfig, dump_yaml, row_label, run_name
from bench.fileio import atomic_write

METRICS_FILE = "metrics.json"
FAILED_FILE = "failed.json"
LOCK_FILE = ".lock"
LOG_FILE = "run.log"


class RunBusyError(RuntimeError):
    """Another process holds the run's lock: it is being executed elsewhere."""


def write_csv(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue().encode())


class RunDir:
    """The directory of one run."""

    def __init__(self, runs_dir: str | Path, run: RunConfig) -> None:
        self.run = run
        self.name = run_name(run)
        self.path = Path(runs_dir) / self.name

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    def is_complete(self) -> bool:
        return (self.path / METRICS_FILE).is_file()

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's exclusive lock (``flock``), or raise :class:`RunBusyError` at once.

        The kernel releases the lock when the holder exits or is killed, so a crashed run never
        blocks its re-launch. Works across processes and hosts on file systems with ``flock``
        support (local disks, NFSv4, Lustre mounted with ``flock``).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunBusyError(f"run {self.name} is being executed by another process") from None
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def is_running(self) -> bool:
        """Whether another process holds the run's lock now."""
        if not (self.path / LOCK_FILE).is_file():
            return False
        try:
            with self.lock():
                return False
        except RunBusyError:
            return True

    def state(self) -> str:
        """``done``, ``running``, ``failed``, ``interrupted`` (started, not running, no failure recorded: it
        resumes on the next launch) or ``missing`` (never started)."""
        if self.is_complete():
            return "done"
        if self.is_running():
            return "running"
        if (self.path / FAILED_FILE).is_file():
            return "failed"
        return "interrupted" if self.path.is_dir() else "missing"

    def start(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / FAILED_FILE).unlink(missing_ok=True)
        atomic_write(self.path / "config.yaml", dump_yaml(self.run).encode())

    def identity(self) -> dict[str, Any]:
        """The fields of ``metrics.json`` that say which run it is (the reports group by them)."""
        run = self.run
        return {
            "run": self.name,
            "method": row_label(run),
            "base_method": run.method,
            "variant": run.variant,
            "dataset": run.dataset,
            "seed": run.seed,
            "backbone": run.backbone.name,
        }

    def write_train_log(self, rows: list[dict[str, Any]]) -> None:
        write_csv(self.path / "train_log.csv", rows)

    def write_per_image(self, rows: list[dict[str, Any]], epoch: Optional[int] = None) -> None:
        """``per_image.csv`` (the reported checkpoint), or ``per_image_epoch<N>.csv`` for a scored epoch."""
        write_csv(self.path / ("per_image.csv" if epoch is None else f"per_image_epoch{epoch}.csv"), rows)

    def write_metrics(self, record: dict[str, Any]) -> None:
        atomic_write(self.path / METRICS_FILE, json.dumps(record, indent=2, sort_keys=True).encode())

    def write_failure(self, message: str) -> None:
        atomic_write(self.path / FAILED_FILE, json.dumps({"error": message}, indent=2).encode())

    def read_metrics(self) -> dict[str, Any]:
        return json.loads((self.path / METRICS_FILE).read_text())
