"""The results store: one directory per run, named by a stable hash of its resolved config.

Layout of ``runs/<dataset>__<method>__s<seed>__<hash>/``::

    config.yaml      resolved RunConfig (written first)
    inputs.json      path and SHA-256 of every input file (checkpoints, relation module), hashed into the name
    run.log          the run's log (every attempt appended)
    .lock            held (flock) by the process executing the run; released when it exits or dies
    train_log.csv    one row per logged training step
    per_image.csv    one row per test image (per_image.<dataset>.csv: a further test set of eval.also_test)
    checkpoint.pt    last epoch's trainable state (for resume; deleted never, small)
    failed.json      present if the run failed (error message); removed when it reruns
    metrics.json     written last and atomically: a valid one means the run is complete

Aggregation reads only ``metrics.json`` files. A damaged file (``metrics.json`` that does not parse or lacks
the run's fields, a ``checkpoint.pt`` that does not load) is moved aside as ``<name>.corrupt`` and the run
redone; everything written here is readable by the group (the umask decides, as for any file).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from bench.config import RunConfig, dump_yaml, row_label
from bench.fileio import atomic_write, move_aside
from bench.runs.inputs import input_digests, input_record
from bench.runs.sweep import run_hash, run_name

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
FAILED_FILE = "failed.json"
LOCK_FILE = ".lock"
LOG_FILE = "run.log"
INPUTS_FILE = "inputs.json"
REQUIRED_METRICS_KEYS = ("run", "method", "dataset", "seed", "metrics")


class CorruptMetricsError(ValueError):
    """A ``metrics.json`` that is empty, truncated or lacks the run's fields; the message names the file."""


def check_record(path: Path) -> dict[str, Any]:
    """The metrics record in ``path``, or :class:`CorruptMetricsError` naming the file and what is wrong."""
    try:
        record = json.loads(path.read_text())
    except ValueError as err:
        raise CorruptMetricsError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise CorruptMetricsError(f"{path}: not a JSON object")
    missing = [k for k in REQUIRED_METRICS_KEYS if k not in record]
    if missing or not isinstance(record["metrics"], dict):
        raise CorruptMetricsError(f"{path}: missing {', '.join(missing) or 'metrics values'}")
    return record


def recorded_name(runs_dir: str | Path, run: RunConfig) -> Optional[str]:
    """The directory of ``run`` found by the input digests its runs recorded, for when an input file is absent
    here (a colleague's results without the weights): the newest complete match, else the newest match."""
    prefix = f"{run.dataset}__{run.method}__s{run.seed}__"
    found = []
    for path in Path(runs_dir).glob(prefix + "*"):
        try:
            recorded = json.loads((path / INPUTS_FILE).read_text())
        except (OSError, ValueError):
            continue
        digests = {k: v.get("sha256") for k, v in recorded.items() if isinstance(v, dict)}
        if path.name == prefix + run_hash(run, digests):
            found.append(((path / METRICS_FILE).is_file(), path.stat().st_mtime_ns, path.name))
    return max(found)[2] if found else None


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
        absent = [k for k, v in input_digests(run).items() if v is None]
        if absent and not (Path(runs_dir) / self.name).is_dir():
            found = recorded_name(runs_dir, run)
            if found is not None:
                log.info("%s absent here: %s matched by the digest its run recorded", ", ".join(absent), found)
                self.name = found
        self.path = Path(runs_dir) / self.name

    def write_masks(self, keeper: Any) -> None:
        """The kept test masks (a :class:`bench.data.masks.MaskKeeper`) into ``masks/``."""
        keeper.write(self.path)

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    def is_complete(self) -> bool:
        """Whether the run has a valid ``metrics.json`` (a damaged one does not count)."""
        return self.metrics_problem() is None and self.metrics_file.is_file()

    def metrics_problem(self) -> Optional[str]:
        """What is wrong with ``metrics.json`` (None when it is valid or absent)."""
        if not self.metrics_file.is_file():
            return None
        try:
            check_record(self.metrics_file)
        except CorruptMetricsError as err:
            return str(err)
        except OSError as err:
            return f"{self.metrics_file}: unreadable ({err.strerror})"
        return None

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
        """Whether another process holds the run's lock now (read-only: works on a colleague's runs)."""
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing releases a lock we took
        return False

    def state(self) -> str:
        """``corrupt`` (a damaged ``metrics.json``: redone by the next run), ``done``, ``running``, ``failed``,
        ``interrupted`` (started, not running, no failure recorded: it resumes on the next launch) or
        ``missing`` (never started)."""
        if self.metrics_problem() is not None:
            return "corrupt"
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
        atomic_write(self.path / INPUTS_FILE, json.dumps(self.inputs(), indent=2, sort_keys=True).encode())
        problem = self.metrics_problem()
        if problem is not None:  # a damaged result: set it aside and redo the run
            move_aside(self.metrics_file, problem)

    def inputs(self) -> dict[str, dict[str, Optional[str]]]:
        """Path and SHA-256 of the run's input files (recorded in ``inputs.json`` and ``metrics.json``)."""
        return input_record(self.run)

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

    def write_per_image(
        self, rows: list[dict[str, Any]], epoch: Optional[int] = None, test_set: Optional[str] = None
    ) -> None:
        """``per_image.csv`` (the reported checkpoint), ``per_image_epoch<N>.csv`` for a scored epoch, or
        ``per_image.<dataset>.csv`` for a further test set of ``eval.also_test``."""
        if test_set is not None:
            name = f"per_image.{test_set}.csv"
        else:
            name = "per_image.csv" if epoch is None else f"per_image_epoch{epoch}.csv"
        write_csv(self.path / name, rows)

    def write_metrics(self, record: dict[str, Any]) -> None:
        atomic_write(self.path / METRICS_FILE, json.dumps(record, indent=2, sort_keys=True).encode())

    def write_failure(self, message: str) -> None:
        atomic_write(self.path / FAILED_FILE, json.dumps({"error": message}, indent=2).encode())

    def read_metrics(self) -> dict[str, Any]:
        return check_record(self.metrics_file)


class FollowerRunDir(RunDir):
    """The run directory as ranks other than 0 see it: read, never written."""

    def start(self) -> None:
        pass

    def write_train_log(self, rows: list[dict[str, Any]]) -> None:
        pass

    def write_per_image(
        self, rows: list[dict[str, Any]], epoch: Optional[int] = None, test_set: Optional[str] = None
    ) -> None:
        pass

    def write_metrics(self, record: dict[str, Any]) -> None:
        pass

    def write_failure(self, message: str) -> None:
        pass

    def write_masks(self, keeper: Any) -> None:
        pass
