"""The TensorBoard event files of a run (bench/runs/tboard.py), read back with TensorBoard's own reader: the
losses are train_log.csv's, the scored epochs metrics.json's, the kept masks are images, a resumed run has no step
twice, and the switch (or a missing package) changes nothing else."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

import bench.runs.tboard  # noqa: E402
import bench.train.trainer  # noqa: E402
from bench.eval.metrics import BASE_DEFINITION  # noqa: E402
from bench.runs.launcher import launch  # noqa: E402
from bench.runs.results import METRICS_FILE, RunDir  # noqa: E402
from bench.runs.runner import execute_run  # noqa: E402
from tests.tiny_runs import single_run, sweep  # noqa: E402


class Interrupted(Exception):
    pass


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def log_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "train_log.csv", newline="") as f:
        return list(csv.DictReader(f))


def global_steps(rows: list[dict[str, str]]) -> list[int]:
    per_epoch = max(int(r["step"]) for r in rows)  # an epoch's last step is always logged
    return [(int(r["epoch"]) - 1) * per_epoch + int(r["step"]) for r in rows]


def scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def run_dir_of(cfg) -> Path:
    return RunDir(cfg.runs_dir, single_run(cfg)).path


@pytest.mark.parametrize("select,split", [("val_best", "val"), ("test_last", "test")])
def test_a_run_logs_its_losses_scored_epochs_headline_and_masks(tmp_path, select, split):
    cfg = sweep(tmp_path, "train.log_every=1", f"eval.select={select}")
    assert launch(cfg)[0].error is None
    run_dir = run_dir_of(cfg)
    acc, rows, record = events(run_dir), log_rows(run_dir), json.loads((run_dir / METRICS_FILE).read_text())
    tags = set(acc.Tags()["scalars"])
    terms = [k for k in rows[0] if k not in ("epoch", "step", "lr", "loss")]
    assert terms == ["seg"]
    assert {"loss/total", "loss/seg", "train/lr"} <= tags
    steps = global_steps(rows)
    for tag, column in [("loss/total", "loss"), ("loss/seg", "seg"), ("train/lr", "lr")]:
        logged = scalars(acc, tag)
        assert [s for s, _ in logged] == steps  # one event per train_log.csv row, at its global step
        assert [np.float32(v) for _, v in logged] == [np.float32(r[column]) for r in rows]

    selection = record["selection"]
    per_epoch = max(int(r["step"]) for r in rows)
    by_epoch = selection["by_epoch"]
    assert by_epoch and sorted(by_epoch) == [str(e) for e in selection["candidates"]]
    scored = {k for m in by_epoch.values() for d in m.values() for k in d}  # val_best: the selection metric only
    assert selection["metric"] in scored
    assert {t for t in tags if t.startswith(f"{split}/")} == {f"{split}/{k}" for k in scored}
    for metric in scored:
        logged = scalars(acc, f"{split}/{metric}")
        expected = [
            (int(e) * per_epoch, {**m.get(BASE_DEFINITION, {}), **m.get(selection["definition"], {})}[metric])
            for e, m in sorted(by_epoch.items(), key=lambda kv: int(kv[0]))
        ]
        assert [s for s, _ in logged] == [s for s, _ in expected]
        assert [np.float32(v) for _, v in logged] == [np.float32(v) for _, v in expected]
    other = {"val": "test", "test": "val"}[split]
    assert not any(t.startswith(f"{other}/") for t in tags)

    for metric, value in record["metrics"].items():
        assert scalars(acc, f"headline/{metric}") == [(steps[-1], pytest.approx(value, rel=1e-6, abs=1e-7))]

    masks = json.loads((run_dir / "masks" / "masks.json").read_text())["images"]
    assert masks and sorted(acc.Tags()["images"]) == sorted(f"masks/{m['name']}" for m in masks)
    for m in masks:
        (image,) = acc.Images(f"masks/{m['name']}")
        gt = np.asarray(Image.open(run_dir / "masks" / m["gt"]))
        assert image.step == steps[-1] and (image.height, image.width) == (gt.shape[0], 3 * gt.shape[1])


def test_a_resumed_run_logs_no_step_twice(tmp_path, monkeypatch):
    """Interrupted after epoch 2 was logged and scored but before its checkpoint: the resumed attempt trains epoch
    2 again, and its event file's purge step drops the interrupted attempt's epoch-2 events."""
    cfg = sweep(tmp_path, "train.log_every=1")
    run = single_run(cfg)
    run_dir = run_dir_of(cfg)
    real_save = bench.train.trainer.save_checkpoint
    calls: list[int] = []

    def stop_before_epoch_2(path, payload):
        calls.append(payload["epoch"])
        if payload["epoch"] == 2 and calls.count(2) == 1:
            raise Interrupted("preempted before the epoch-2 checkpoint")
        real_save(path, payload)

    monkeypatch.setattr(bench.train.trainer, "save_checkpoint", stop_before_epoch_2)
    with pytest.raises(Interrupted):
        execute_run(run, cfg.runs_dir)
    raw = events(run_dir)
    interrupted = [s for s, _ in scalars(raw, "loss/total")]
    assert interrupted == [1, 2, 3, 4]  # epoch 2 was logged before the interruption

    execute_run(run, cfg.runs_dir)
    assert calls == [1, 2, 2]  # the second attempt resumed from epoch 1 and trained epoch 2 again
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 2  # every attempt appends a file
    acc, rows = events(run_dir), log_rows(run_dir)
    for tag, column in [("loss/total", "loss"), ("train/lr", "lr")]:
        logged = scalars(acc, tag)
        assert [s for s, _ in logged] == global_steps(rows) == [1, 2, 3, 4]
        assert [np.float32(v) for _, v in logged] == [np.float32(r[column]) for r in rows]
    record = json.loads((run_dir / METRICS_FILE).read_text())
    metric = record["selection"]["metric"]
    assert [s for s, _ in scalars(acc, f"val/{metric}")] == [2, 4]
    assert [s for s, _ in scalars(acc, f"headline/{metric}")] == [4]


def test_the_switch_and_a_missing_package_change_nothing_else(tmp_path, monkeypatch, caplog):
    on = sweep(tmp_path, runs="on")
    off = sweep(tmp_path, "train.tensorboard=false", runs="off")
    assert run_dir_of(on).name == run_dir_of(off).name  # not in the run hash
    assert launch(on)[0].error is None and launch(off)[0].error is None
    assert (run_dir_of(on) / "tb").is_dir() and not (run_dir_of(off) / "tb").exists()
    metrics = json.loads((run_dir_of(on) / METRICS_FILE).read_text())["metrics"]
    assert json.loads((run_dir_of(off) / METRICS_FILE).read_text())["metrics"] == metrics

    monkeypatch.setattr(bench.runs.tboard, "_writer_class", lambda: None)  # as without the package
    missing = sweep(tmp_path, runs="missing")
    with caplog.at_level(logging.WARNING, logger="bench.runs.tboard"):
        assert launch(missing)[0].error is None
    warnings = [r for r in caplog.records if r.name == "bench.runs.tboard"]
    assert len(warnings) == 1 and "not installed" in warnings[0].getMessage()
    assert not (run_dir_of(missing) / "tb").exists()
    assert json.loads((run_dir_of(missing) / METRICS_FILE).read_text())["metrics"] == metrics
