"""The reproducibility record of a run (``metrics.json`` → ``provenance``) and the check that the runs of
one table agree on it.

Recorded: the git commit of the suite and whether the work tree had uncommitted changes; the source tree
(``source``: ``kind`` "git" or "archive", the ``digest`` of the tracked files and the ``commit``, see
:mod:`bench.runs.source`), so that a copy without git records which code ran; the versions of the packages that
decide the numbers and torch's build (full version, CUDA, cuDNN); the device (on a GPU its name and driver); the
SHA-256 of every checkpoint the run loaded (student, and teacher if any; ``random_init`` when a full-size model ran
on random weights, and ``random_by_method`` when the method itself asked for them: ``scratch``) and the command
line that started the sweep (``SAMFIT_COMMAND``, set by the CLI and inherited by launcher jobs).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from bench.runs.source import REPO, git, suite_source

# import name -> distribution name
PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "segment_anything": "segment-anything",
    "sam2": "sam2",
    "py_sod_metrics": "pysodmetrics",
    "numpy": "numpy",
}
COMMAND_ENV = "SAMFIT_COMMAND"


def git_state() -> dict[str, Any]:
    """``{"commit": hex or None, "dirty": bool or None, "source": {...}}`` of the suite: in a checkout its HEAD
    and whether tracked files changed; in an archive the commit ``git archive`` wrote (or None) and dirty None."""
    source = dict(suite_source())
    status = git(REPO, "status", "--porcelain", "--untracked-files=no") if source["kind"] == "git" else None
    return {"commit": source["commit"], "dirty": None if status is None else bool(status.strip()), "source": source}


def torch_build() -> dict[str, Any]:
    """torch's full version (``2.14.1+cu130``, not the distribution's), its CUDA and cuDNN versions (None if absent)."""
    try:
        cudnn = torch.backends.cudnn.version()
    except Exception:  # a build without cuDNN, or one whose library does not load
        cudnn = None
    return {"version": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn}


def gpu_driver() -> Optional[str]:
    """The NVIDIA driver version from ``nvidia-smi``, None without it or when it fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return lines[0].strip() if lines else None


def gpu_record(device: Optional[torch.device]) -> Optional[dict[str, Any]]:
    """``{"name", "driver"}`` of the GPU a run used, None on the CPU."""
    if device is None or device.type != "cuda":
        return None
    return {"name": torch.cuda.get_device_name(device), "driver": gpu_driver()}


def package_versions() -> dict[str, Optional[str]]:
    out: dict[str, Optional[str]] = {}
    for name, dist in PACKAGES.items():
        try:
            out[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else the platform's processor or machine name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: Optional[torch.device] = None) -> str:
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({_cpu_model()}, {platform.machine()}, {os.cpu_count()} cores)"


def weights_record(model: Any) -> dict[str, Any]:
    """Which weights a backbone ran with: name, checkpoint file and SHA-256, or the seed/random marker;
    ``random_by_method`` is true when the PEFT method re-initialised it on purpose (``scratch``)."""
    return {
        "backbone": model.name,
        "checkpoint": getattr(model, "checkpoint_path", None),
        "sha256": getattr(model, "checkpoint_sha256", None),
        "weights_id": model.weights_id,
        "random_init": model.weights_id == "random",
        "random_by_method": bool(getattr(model, "random_by_method", False)),
    }


def provenance_record(parts: Any) -> dict[str, Any]:
    """The record of a run built from ``parts`` (:class:`bench.train.trainer.TrainParts`)."""
    student = parts.student
    device = next(student.parameters()).device
    teacher = getattr(parts, "teacher", None)
    return {
        **git_state(),
        "packages": package_versions(),
        "torch": torch_build(),
        "python": platform.python_version(),
        "device": device_name(device),
        "gpu": gpu_record(device),
        "student_weights": weights_record(student),
        "teacher_weights": weights_record(teacher) if teacher is not None else None,
        "command": os.environ.get(COMMAND_ENV) or " ".join(sys.argv),
    }


def mixed_provenance(records: Iterable[dict[str, Any]]) -> list[str]:
    """Warnings when complete runs of one table differ in commit, source digest, dirty state, package versions, torch
    build or weights,
    and a note for runs on random weights; ``[]`` when they agree (runs without a record are counted). Runs whose
    method chose random weights (``random_by_method``: ``scratch``) are neither: :func:`by_design_notes` names them."""
    records = list(records)
    with_record = [r for r in records if isinstance(r.get("provenance"), dict)]
    notes = []
    if len(with_record) < len(records):
        notes.append(f"{len(records) - len(with_record)} run(s) have no provenance record (written by older code)")
    prov = [r["provenance"] for r in with_record]

    def differ(label: str, values: list[Any]) -> None:
        distinct = sorted({str(v) for v in values})
        if len(distinct) > 1:
            notes.append(f"runs come from different {label}: {', '.join(distinct)}")

    differ("commits", [p.get("commit") for p in prov])
    digests = [_source(p).get("digest") for p in prov]  # records written before the digest have none: not compared
    differ("source trees (digest)", [d for d in digests if d])
    if any(p.get("dirty") for p in prov):
        notes.append(f"{sum(bool(p.get('dirty')) for p in prov)} run(s) ran on a work tree with uncommitted changes")
    for package in PACKAGES:
        differ(f"{package} versions", [p.get("packages", {}).get(package) for p in prov])
    builds = [p["torch"] for p in prov if isinstance(p.get("torch"), dict)]
    differ("torch builds", [f"{b.get('version')} cuda {b.get('cuda')} cudnn {b.get('cudnn')}" for b in builds])
    by_backbone: dict[str, list[Any]] = {}
    for p in prov:
        for key in ("student_weights", "teacher_weights"):
            w = p.get(key)
            if w and not w.get("random_by_method"):
                by_backbone.setdefault(w["backbone"], []).append(w.get("sha256") or w.get("weights_id"))
    for backbone, ids in sorted(by_backbone.items()):
        differ(f"{backbone} weights", ids)
    random_runs = sorted(random_init_runs(with_record))
    if random_runs:
        listed = ", ".join(random_runs[:5]) + (" ..." if len(random_runs) > 5 else "")
        notes.append(
            f"{len(random_runs)} run(s) used RANDOM backbone weights (backbone.random_init=true), "
            f"their numbers are not a pretrained model's: {listed}"
        )
    return notes


def random_init_runs(records: Iterable[dict[str, Any]]) -> set[str]:
    """Names of the runs whose student backbone had random weights."""
    return {r["run"] for r in records if _student(r).get("random_init") and not _student(r).get("random_by_method")}


def random_by_method_runs(records: Iterable[dict[str, Any]]) -> set[str]:
    """Names of the runs whose method trained the student from random weights by design (``scratch``)."""
    return {r["run"] for r in records if _student(r).get("random_by_method")}


def by_design_notes(records: Iterable[dict[str, Any]]) -> list[str]:
    """A note naming the runs trained from scratch (random init by design), ``[]`` without any."""
    runs = sorted(random_by_method_runs(records))
    if not runs:
        return []
    listed = ", ".join(runs[:5]) + (" ..." if len(runs) > 5 else "")
    return [f"{len(runs)} run(s) trained from scratch (random init by design): {listed}"]


def _source(provenance: dict[str, Any]) -> dict[str, Any]:
    source = provenance.get("source")
    return source if isinstance(source, dict) else {}


def source_label(provenance: dict[str, Any]) -> str:
    """The commit's first 12 hex digits, else the source digest's (``<12 hex> (archive digest)``), else "?"."""
    if provenance.get("commit"):
        return str(provenance["commit"])[:12]
    digest = _source(provenance).get("digest")
    return f"{str(digest)[:12]} ({_source(provenance).get('kind', 'source')} digest)" if digest else "?"


def _student(record: dict[str, Any]) -> dict[str, Any]:
    return (record.get("provenance") or {}).get("student_weights") or {}
