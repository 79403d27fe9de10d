"""A real smoke sweep (tiny_sam, two methods, four test images) and its report, shared by the page,
figure and LaTeX tests. The report goes to a folder of its own and must leave the runs untouched."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.config import BenchConfig
from bench.runs.launcher import launch
from bench.runs.sweep import load_config
from reports.report import build_report
from tests.tiny_runs import sweep_args


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time (ns)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            st = os.stat(Path(dirpath) / f)
            out[str(Path(dirpath, f).relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@dataclass
class SmokeReport:
    cfg: BenchConfig
    out: Path  # the report folder (outside the runs folder)
    markdown: str
    runs_before: dict[str, tuple[int, int]]
    runs_after: dict[str, tuple[int, int]]


@pytest.fixture(scope="session")
def smoke_report(tmp_path_factory) -> SmokeReport:
    tmp = tmp_path_factory.mktemp("smoke")
    cfg = load_config(sweep_args(tmp, "methods=[zero_shot,adapter]"))
    assert not any(o.error for o in launch(cfg))
    runs = Path(cfg.runs_dir)
    before = tree_state(runs)
    runs.chmod(0o555)  # read-only for a non-root user (root ignores it: the tree comparison is the check)
    try:
        markdown = build_report(cfg, out_dir=tmp / "report")
    finally:
        runs.chmod(0o755)
    return SmokeReport(cfg, tmp / "report", markdown, before, tree_state(runs))
