"""Ctrl-C on `run` and kill -9 of a local job (issue 20): one line, exit 130, no partial files; a killed job
is reported as killed and its run resumes; SIGTERM and Ctrl-C under the default (local) launcher."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench.runs.launcher import launch
from bench.runs.results import RunDir
from bench.runs.sweep import run_configs
from tests.bench.runs.test_reliability import LONG, _env, _progress, _wait_for
from tests.tiny_runs import REPO, sweep, sweep_args

SLOW_SITE = (
    "import time, bench.train.trainer as t\n"
    "_real = t.structure_loss\n"
    "def _slow(*a, **k):\n    time.sleep(0.15)\n    return _real(*a, **k)\n"
    "t.structure_loss = _slow\n"
)


def _slow_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SLOW_SITE)
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    return env


def _start_run(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, RunDir]:
    """``run_benchmark.py run`` of the slowed LONG sweep in a child process that leads its own process
    group (as a shell starts a job), and the directory of its run."""
    args = sweep_args(tmp_path, *LONG, *extra)
    rd = RunDir(sweep(tmp_path, *LONG).runs_dir, run_configs(sweep(tmp_path, *LONG))[0])
    child = subprocess.Popen(
        [sys.executable, str(REPO / "run_benchmark.py"), "run", *args],
        env=_slow_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return child, rd


def test_ctrl_c_on_run_is_one_line_exit_130_and_leaves_the_run_resumable(tmp_path):
    child, rd = _start_run(tmp_path)
    try:
        _wait_for(lambda: _progress(rd).get("epoch") == 2, what="epoch 2")
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130
    assert err.rstrip().splitlines()[-1] == "interrupted; 0 runs complete, 1 resumable"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not rd.is_complete() and rd.checkpoint.is_file()
    assert [p.name for p in rd.path.rglob("*.tmp")] == []


def _grandchildren() -> list[int]:
    """Processes started by the processes this test started (submitit's local controller -> its task)."""
    me = os.getpid()
    kids = []
    for task in Path(f"/proc/{me}/task").iterdir():
        kids += [int(p) for p in (task / "children").read_text().split()]
    out = []
    for pid in kids:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        if children.is_file():
            out += [int(p) for p in children.read_text().split()]
    return out


def test_a_local_job_killed_with_sigkill_is_reported_as_killed_and_resumes(tmp_path, monkeypatch):
    for key, value in _slow_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    cfg = sweep(tmp_path, *LONG, "launcher.name=local", "launcher.timeout_min=10")
    rd = RunDir(cfg.runs_dir, run_configs(cfg)[0])
    outcomes: list = []
    thread = threading.Thread(target=lambda: outcomes.extend(launch(cfg)))
    thread.start()
    try:
        _wait_for(lambda: _progress(rd).get("epoch") == 2, what="epoch 2 in the job")
        tasks = _grandchildren()
        assert tasks, "no job task process found"
        for pid in tasks:
            os.kill(pid, signal.SIGKILL)
    finally:
        thread.join(timeout=120)
    (outcome,) = outcomes
    assert outcome.error == (
        "job killed by a signal (e.g. kill -9 or the out-of-memory killer) before it finished; "
        "its runs resume from their last epoch checkpoint on the next launch"
    )
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    cfg.launcher.name = "inline"
    (again,) = launch(cfg)
    assert again.record is not None and "resumed from" in rd.log_file.read_text()


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            children = task / "children"
            if children.is_file():
                found = [int(c) for c in children.read_text().split()]
                out += found
                todo += found
    return out


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ")[1][0] != "Z"  # a zombie has exited
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.parametrize(
    "stop, code",
    [("sigterm", 143), ("ctrl_c", 130)],
    ids=["sigterm_to_the_launcher", "ctrl_c_in_a_terminal"],
)
def test_stopping_a_local_launch_stops_its_jobs_in_one_line(tmp_path, stop, code):
    """SIGTERM of the launcher (kill, a scheduler) and Ctrl-C in a terminal (SIGINT to the whole foreground
    process group: launcher, submitit's job controller and the training process) under the default
    launcher: the jobs end, the launcher prints one line and nothing else reaches the terminal."""
    child, rd = _start_run(tmp_path, "launcher.name=local", "launcher.timeout_min=10")
    jobs: list[int] = []
    try:
        # under load the job's imports alone can take a minute
        _wait_for(lambda: bool(_progress(rd)), timeout=300, what="the job's first logged step")
        jobs = _descendants(child.pid)
        assert jobs, "the local launch started no job process"
        if stop == "sigterm":
            child.send_signal(signal.SIGTERM)
        else:
            os.killpg(child.pid, signal.SIGINT)  # the child leads its own process group, as a shell's job
        out, err = child.communicate(timeout=60)
        _wait_for(lambda: not any(_alive(p) for p in jobs), what="the job processes to end")
    finally:
        if child.poll() is None:
            child.kill()
        for pid in jobs:  # never leave an orphaned job training on after a failed assertion
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert child.returncode == code
    assert err.rstrip().splitlines()[-1] == "interrupted; 0 runs complete, 1 resumable", err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
