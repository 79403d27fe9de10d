"""Content-addressed runs and self-healing run directories (issue 20): weights rehash, damaged checkpoint and
metrics files, a foreign checkpoint, permissions, read-only reports, a full disk."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import bench.fileio
import bench.runs.inputs
import reports.report
from bench.app.cli import cmd_status, main
from bench.backbones import build_backbone
from bench.config import BackboneConfig, config_digest, to_dict
from bench.runs.launcher import launch
from bench.runs.results import FAILED_FILE, METRICS_FILE, RunDir
from bench.runs.runner import execute_run
from bench.runs.sweep import load_config, run_configs, run_hash
from bench.train.resume import ForeignCheckpointError
from reports.report import build_report
from tests.tiny_runs import sweep, sweep_args


def _tiny_checkpoint(path: Path, shift: float = 0.0) -> Path:
    state = build_backbone(BackboneConfig(name="tiny_sam")).state_dict()
    torch.save({k: v + shift if v.is_floating_point() else v for k, v in state.items()}, path)
    return path


def _only(cfg):
    (run,) = run_configs(cfg)
    return run


# ----------------------------------------------------------------------------- content-addressed runs
def test_overwriting_a_checkpoint_at_the_same_path_gives_a_new_run(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "weights.pt")
    args = ("methods=[zero_shot]", f"backbone.checkpoint={ckpt}")
    cfg = sweep(tmp_path, *args)
    first = RunDir(cfg.runs_dir, _only(cfg))
    assert len(launch(cfg)) == 1 and first.is_complete()
    old = first.read_metrics()["metrics"]

    _tiny_checkpoint(ckpt, shift=0.05)  # same path, other content
    cfg = sweep(tmp_path, *args)
    second = RunDir(cfg.runs_dir, _only(cfg))
    assert second.name != first.name
    outcomes = launch(cfg)
    assert len(outcomes) == 1 and outcomes[0].record is not None  # executed, not "0 runs executed"
    assert outcomes[0].record["metrics"] != old
    recorded = json.loads((second.path / "inputs.json").read_text())
    assert recorded["backbone.checkpoint"]["sha256"] == bench.runs.inputs.sha256_file(ckpt)
    assert second.read_metrics()["inputs"] == recorded


def test_a_checkpoint_found_in_the_checkpoints_dir_enters_the_hash(tmp_path):
    """No backbone.checkpoint given: the file download put in backbone.checkpoints_dir is hashed by content."""
    folder = tmp_path / "ckpts"
    folder.mkdir()
    target = folder / "sam_vit_b_01ec64.pth"
    args = ("backbone=sam_vit_b", f"backbone.checkpoints_dir={folder}", "methods=[zero_shot]")
    target.write_bytes(b"first weights")
    first = run_hash(_only(sweep(tmp_path, *args)))
    target.write_bytes(b"other weights, longer")  # same path, other content
    assert run_hash(_only(sweep(tmp_path, *args))) != first


def test_teacher_and_relation_module_contents_enter_the_hash(tmp_path):
    teacher = _tiny_checkpoint(tmp_path / "teacher.pt")
    relation = tmp_path / "relation.pt"
    relation.write_bytes(b"one")
    cfg = sweep(tmp_path, "methods=[adapter+infosam]", f"teacher.checkpoint={teacher}")
    run = _only(cfg)
    run.distill = {"relation_ckpt": str(relation)}
    before = run_hash(run)
    relation.write_bytes(b"two")
    after_relation = run_hash(run)
    _tiny_checkpoint(teacher, shift=0.1)
    after_teacher = run_hash(run)
    assert len({before, after_relation, after_teacher}) == 3


def test_a_run_without_input_files_keeps_its_config_hash(tmp_path):
    run = _only(sweep(tmp_path))
    assert bench.runs.inputs.input_files(run) == {}
    # the config-only hash (as before input digests entered the hash): results of such runs stay valid
    assert RunDir(tmp_path / "runs", run).name == f"synth_polyp__adapter__s0__{config_digest(to_dict(run))}"


def test_a_digest_is_computed_once_per_path_size_and_mtime(tmp_path, monkeypatch):
    ckpt = _tiny_checkpoint(tmp_path / "w.pt")
    calls = []
    real = bench.runs.inputs.sha256_file
    monkeypatch.setattr(bench.runs.inputs, "sha256_file", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(bench.runs.inputs, "_memo", {})
    cache = tmp_path / "cache"
    first = bench.runs.inputs.file_digest(ckpt, cache)
    monkeypatch.setattr(bench.runs.inputs, "_memo", {})  # a new process: only the disk cache is left
    assert bench.runs.inputs.file_digest(ckpt, cache) == first and len(calls) == 1
    assert (cache / "digests.json").is_file()
    os.utime(ckpt, ns=(1, 1))  # touched: hashed again
    assert bench.runs.inputs.file_digest(ckpt, cache) == first and len(calls) == 2


def test_report_and_status_find_the_runs_when_the_checkpoint_is_absent(tmp_path, caplog):
    ckpt = _tiny_checkpoint(tmp_path / "weights.pt")
    args = sweep_args(tmp_path, "methods=[zero_shot]", f"backbone.checkpoint={ckpt}")
    cfg = load_config(args)
    launch(cfg)
    name = RunDir(cfg.runs_dir, _only(cfg)).name
    ckpt.unlink()  # a colleague's results without the weights
    with caplog.at_level(logging.INFO):
        assert RunDir(cfg.runs_dir, _only(load_config(args))).name == name
    assert "backbone.checkpoint absent here" in caplog.text
    assert "1/1 runs complete" in build_report(load_config(args))
    assert cmd_status(args).splitlines()[1].startswith("done")


# ----------------------------------------------------------------------------- checkpoint.pt
def _reference(tmp_path):
    """A finished 2-epoch run, its metrics and its last checkpoint's bytes."""
    cfg = sweep(tmp_path, runs="reference")
    run = _only(cfg)
    record = execute_run(run, cfg.runs_dir)
    return run, record["metrics"], RunDir(cfg.runs_dir, run).checkpoint.read_bytes()


class _Exploit:
    """Unpickled with ``weights_only=False`` it would run ``os.mkdir(marker)``: code in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong_keys", "wrong_tensors", "pickled_code"])
def test_a_damaged_checkpoint_is_moved_aside_and_the_run_restarts(tmp_path, caplog, damage):
    run, metrics, good = _reference(tmp_path)
    cfg = sweep(tmp_path)
    rd = RunDir(cfg.runs_dir, run)
    rd.path.mkdir(parents=True)
    marker = tmp_path / "code_ran"
    if damage == "pickled_code":  # loaded with weights_only=True: refused as damaged, the code never runs
        torch.save({"model": _Exploit(marker)}, rd.checkpoint)
    elif damage == "truncated":
        rd.checkpoint.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        rd.checkpoint.write_bytes(os.urandom(4096))
    elif damage == "empty":
        rd.checkpoint.write_bytes(b"")
    elif damage == "wrong_keys":
        torch.save({"model": {}}, rd.checkpoint)
    else:
        state = torch.load(bench.fileio.io.BytesIO(good), weights_only=True)
        state["parts"]["student"] = {"no.such.parameter": torch.zeros(3)}
        torch.save(state, rd.checkpoint)
    with caplog.at_level(logging.WARNING):
        record = execute_run(run, cfg.runs_dir)
    assert record["metrics"] == metrics  # trained from scratch: the same numbers as a clean run
    assert (rd.path / "checkpoint.pt.corrupt").is_file()
    assert f"{rd.checkpoint} is damaged" in caplog.text and "moved aside to checkpoint.pt.corrupt" in caplog.text
    assert "resumed from" not in rd.log_file.read_text()
    assert not marker.exists()


def test_a_checkpoint_without_a_run_name_is_resumed_with_a_warning(tmp_path, caplog):
    """Checkpoints written before they recorded their run: resumed (the run's own folder holds them)."""
    from bench.train.resume import CHECKPOINT_KEYS, read_checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save({**dict.fromkeys(CHECKPOINT_KEYS, {}), "epoch": 3}, path)
    with caplog.at_level(logging.WARNING):
        state = read_checkpoint(path, "some_run")
    assert state is not None and state["epoch"] == 3 and path.is_file()
    assert f"{path} records no run name (older code); resuming from it" in caplog.text


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    cfg = sweep(tmp_path, "seeds=[0,1]")
    first, second = run_configs(cfg)
    execute_run(first, cfg.runs_dir)
    foreign = RunDir(cfg.runs_dir, second)
    foreign.path.mkdir(parents=True)
    shutil.copy(RunDir(cfg.runs_dir, first).checkpoint, foreign.checkpoint)
    with pytest.raises(ForeignCheckpointError) as info:
        execute_run(second, cfg.runs_dir)
    assert str(info.value) == (
        f"{foreign.checkpoint} belongs to run {RunDir(cfg.runs_dir, first).name}, not {foreign.name}; "
        "delete it to restart this run from scratch"
    )
    assert "ForeignCheckpointError" in json.loads((foreign.path / FAILED_FILE).read_text())["error"]
    assert not foreign.is_complete() and foreign.checkpoint.is_file()  # never resumed, never overwritten


# ----------------------------------------------------------------------------- metrics.json
@pytest.mark.parametrize("content", ["", '{"run": "x", "metr', "{}"])
def test_a_damaged_metrics_file_is_shown_skipped_and_redone(tmp_path, caplog, content):
    args = sweep_args(tmp_path, "train.epochs=1")
    cfg = load_config(args)
    run = _only(cfg)
    good = execute_run(run, cfg.runs_dir)
    rd = RunDir(cfg.runs_dir, run)
    rd.metrics_file.write_text(content)

    line = cmd_status(args).splitlines()[1]
    assert line.startswith("corrupt") and str(rd.metrics_file) in line
    with caplog.at_level(logging.WARNING):
        table = build_report(load_config(args))
    assert "0/1 runs complete" in table and f"skipped a damaged result: {rd.metrics_file}" in caplog.text

    outcomes = launch(load_config(args))
    assert len(outcomes) == 1 and outcomes[0].record["metrics"] == good["metrics"]
    assert (rd.path / "metrics.json.corrupt").read_text() == content
    assert rd.is_complete()


# ----------------------------------------------------------------------------- permissions, read-only, disk full
def test_results_are_readable_by_the_group_under_the_umask(tmp_path):
    cfg = sweep(tmp_path, "train.epochs=1")
    rd = RunDir(cfg.runs_dir, _only(cfg))
    old = os.umask(0o022)
    try:
        execute_run(_only(cfg), cfg.runs_dir)
    finally:
        os.umask(old)
    for name in (METRICS_FILE, "config.yaml", "checkpoint.pt", "per_image.csv", "inputs.json"):
        assert stat.S_IMODE((rd.path / name).stat().st_mode) == 0o644, name


@contextmanager
def _read_only(path: Path):
    """Make ``path`` unwritable, also for root (immutable flag), and restore it."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a folder read-only")
        subprocess.run(["chattr", "-R", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-R", "-i", str(path)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)


def test_report_and_status_on_a_read_only_runs_dir(tmp_path, capsys, caplog):
    args = sweep_args(tmp_path, "train.epochs=1")
    cfg = load_config(args)
    execute_run(_only(cfg), cfg.runs_dir)
    runs = Path(cfg.runs_dir)
    elsewhere = tmp_path / "my_reports"
    with _read_only(runs):
        with pytest.raises(PermissionError):  # really read-only
            (runs / "probe").write_text("x")
        assert main(["status", *args]) == 0
        assert capsys.readouterr().out.splitlines()[1].startswith("done")
        with caplog.at_level(logging.WARNING, logger="reports.report"):
            assert main(["report", *args]) == 0  # printed only, with a warning
        captured = capsys.readouterr()
        assert "1/1 runs complete" in captured.out
        assert "cannot write the report into" in caplog.text and "report.out_dir=DIR writes it elsewhere" in caplog.text
        assert main(["report", *args, f"report.out_dir={elsewhere}"]) == 0
        assert main(["report", *args, "report.out_dir=-"]) == 0  # print only: nothing is written anywhere
        assert "1/1 runs complete" in capsys.readouterr().out
    assert "1/1 runs complete" in (elsewhere / "smoke.md").read_text()
    assert {p.suffix for p in elsewhere.iterdir()} >= {".md", ".tex", ".csv", ".html", ".png"}
    assert not (runs / "_reports").exists()


def test_report_on_a_read_only_file_system_prints_the_table(tmp_path, monkeypatch, capsys, caplog):
    """A read-only mount (EROFS) is read-only like a folder without write permission: the table is printed."""
    args = sweep_args(tmp_path, "train.epochs=1")
    cfg = load_config(args)
    execute_run(_only(cfg), cfg.runs_dir)

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(reports.report, "atomic_write", read_only)
    capsys.readouterr()
    with caplog.at_level(logging.WARNING, logger="reports.report"):
        assert main(["report", *args]) == 0
    assert "1/1 runs complete" in capsys.readouterr().out
    assert "cannot write the report" in caplog.text and "Read-only file system" in caplog.text


def test_report_on_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    args = sweep_args(tmp_path, "train.epochs=1")
    cfg = load_config(args)
    execute_run(_only(cfg), cfg.runs_dir)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bench.fileio.os, "fsync", full)
    capsys.readouterr()
    assert main(["report", *args]) == 1
    err = capsys.readouterr().err
    out_dir = Path(cfg.runs_dir) / "_reports"
    assert err.splitlines()[-1] == f"error: {out_dir / 'smoke.md'}: No space left on device"
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []  # no 0-byte smoke.md, no temporary file


def test_report_needs_no_weights_of_a_full_size_backbone(tmp_path, capsys):
    args = sweep_args(tmp_path, "backbone=sam_vit_b", f"backbone.checkpoints_dir={tmp_path / 'none'}")
    assert main(["run", *args]) == 2  # running needs the weights ...
    assert "backbone sam_vit_b has no checkpoint" in capsys.readouterr().err
    assert main(["report", *args]) == 0  # ... reading results does not
    assert "0/1 runs complete" in capsys.readouterr().out
