"""The results store: one directory per run, named by a stable hash of its resolved config.

Layout of ``runs/<dataset>__<method>__s<seed>__<hash>/``::

    config.yaml      resolved RunConfig (written first)
    train_log.csv    one row per logged training step
    per_image.csv    one row per test image
    checkpoint.pt    last epoch's trainable state (for resume; deleted never, small)
    failed.json      present if the run failed (error message); removed when it reruns
    metrics.json     written last and atomically: its presence means the run is complete

Aggregation reads only ``metrics.json`` files.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable

from bench.config import RunConfig, dump_yaml, run_name
from bench.fileio import atomic_write

METRICS_FILE = "metrics.json"
FAILED_FILE = "failed.json"


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

    def is_complete(self) -> bool:
        return (self.path / METRICS_FILE).is_file()

    def start(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / FAILED_FILE).unlink(missing_ok=True)
        atomic_write(self.path / "config.yaml", dump_yaml(self.run).encode())

    def write_train_log(self, rows: list[dict[str, Any]]) -> None:
        write_csv(self.path / "train_log.csv", rows)

    def write_per_image(self, rows: list[dict[str, Any]]) -> None:
        write_csv(self.path / "per_image.csv", rows)

    def write_metrics(self, record: dict[str, Any]) -> None:
        atomic_write(self.path / METRICS_FILE, json.dumps(record, indent=2, sort_keys=True).encode())

    def write_failure(self, message: str) -> None:
        atomic_write(self.path / FAILED_FILE, json.dumps({"error": message}, indent=2).encode())

    def read_metrics(self) -> dict[str, Any]:
        return json.loads((self.path / METRICS_FILE).read_text())
