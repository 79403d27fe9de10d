"""Semantic runs end to end on tiny_sam: synth_shapes under the clean protocol (per-class head), the Trans10K-v2
fixture in its public layout under protocol=convlora (queries head + Mask2Former loss), a resumed run, refusals."""

from __future__ import annotations

import csv

import pytest

import bench.train.trainer
from bench.app.cli import validate_names
from bench.config import ConfigError
from bench.runs.results import RunDir
from bench.runs.runner import execute_run
from bench.runs.sweep import load_config
from datasets.trans10k import write_fixture
from tests.tiny_runs import single_run, sweep, sweep_args

SHAPES = ("background", "disc", "square", "triangle", "ring")
SEMANTIC = ("datasets=[synth_shapes]", "data.synth.train_size=8", "data.synth.val_size=4", "data.synth.test_size=4")


class Interrupted(Exception):
    pass


def _per_image(run_dir):
    with open(run_dir / "per_image.csv") as f:
        return list(csv.DictReader(f))


def test_a_shapes_run_trains_the_per_class_head_and_scores_every_class(tmp_path):
    cfg = sweep(tmp_path, *SEMANTIC, "methods=[lora]")
    run = single_run(cfg)
    record = execute_run(run, cfg.runs_dir)
    assert record["task"] == "semantic" and tuple(record["classes"]) == SHAPES
    assert record["task_head"] == {"head": "per_class", "loss": "ce_dice", "mask_tokens": 5}
    assert record["selection"]["metric"] == "miou"
    by_def = record["metrics_by_definition"]
    assert set(by_def) == {"clean", "convlora"}
    for definition in by_def.values():
        assert {"acc", "miou", *(f"iou_{c}" for c in SHAPES)} <= set(definition)
        assert 0 <= definition["miou"] <= 1 and 0 <= definition["acc"] <= 1
    rows = _per_image(RunDir(cfg.runs_dir, run).path)
    assert len(rows) == record["num_test_images"] == 4
    assert {"name", "acc", "miou", "iou_disc", "convlora.miou", "convlora.iou_ring"} <= set(rows[0])
    log = (RunDir(cfg.runs_dir, run).path / "train_log.csv").read_text().splitlines()
    assert log[0].split(",")[4:] == ["ce", "dice"]  # the task's terms are the loss


def test_trans10k_fixture_trains_one_epoch_under_the_convlora_protocol(tmp_path):
    write_fixture(tmp_path / "data")
    args = sweep_args(tmp_path, "datasets=[trans10k]", "methods=[decoder_only]", "protocol=convlora")
    cfg = load_config(
        [a for a in args if not a.startswith("train.epochs")] + [f"data.root={tmp_path / 'data'}", "train.epochs=1"]
    )
    validate_names(cfg, weights=False)
    run = single_run(cfg)
    record = execute_run(run, cfg.runs_dir)
    assert record["task_head"] == {"head": "queries", "loss": "m2f_sum", "mask_tokens": 10}
    assert record["metric_definition"] == "convlora" and len(record["classes"]) == 12
    assert record["metrics"]["miou"] == record["metrics_by_definition"]["convlora"]["miou"]
    log = (RunDir(cfg.runs_dir, run).path / "train_log.csv").read_text().splitlines()
    assert {"m2f_ce", "m2f_mask", "m2f_dice"} <= set(log[0].split(","))


def _interrupted_then_resumed(tmp_path, monkeypatch, *extra: str) -> tuple[dict, dict, str, str]:
    cfg_a, cfg_b = sweep(tmp_path, *extra, runs="a"), sweep(tmp_path, *extra, runs="b")
    run = single_run(cfg_a)
    record_a = execute_run(run, cfg_a.runs_dir)
    real_save = bench.train.trainer.save_checkpoint

    def save_then_stop(path, payload):
        real_save(path, payload)
        if payload["epoch"] == 1:
            raise Interrupted("preempted after epoch 1")

    monkeypatch.setattr(bench.train.trainer, "save_checkpoint", save_then_stop)
    with pytest.raises(Interrupted):
        execute_run(run, cfg_b.runs_dir)
    monkeypatch.setattr(bench.train.trainer, "save_checkpoint", real_save)
    record_b = execute_run(run, cfg_b.runs_dir)
    logs = [(RunDir(c.runs_dir, run).path / "train_log.csv").read_text() for c in (cfg_a, cfg_b)]
    return record_a, record_b, logs[0], logs[1]


def test_an_interrupted_per_class_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    a, b, log_a, log_b = _interrupted_then_resumed(tmp_path, monkeypatch, *SEMANTIC, "methods=[lora]")
    assert b["metrics_by_definition"] == a["metrics_by_definition"]
    assert log_a == log_b


def test_an_interrupted_queries_run_draws_the_same_loss_points_when_resumed(tmp_path, monkeypatch):
    """Mask2Former's loss samples points: seeded per batch (run seed, epoch, sample indices), a resumed run draws
    what an uninterrupted one does. Compared by the seeds, not the logs: with identical forward values the gradient
    of transformers' Mask2FormerLoss differs in the 8th digit between two processes (measured 4e-8 on a gradient
    sum, also with one thread and deterministic algorithms), which its importance sampling amplifies to 3e-4 in
    the next step's terms, the size of the change another seed makes (1e-3)."""
    import bench.tasks.semantic

    seeds: list[int] = []
    real = bench.tasks.semantic.m2f_terms

    def spy(*args):
        seeds.append(args[-1])
        return real(*args)

    monkeypatch.setattr(bench.tasks.semantic, "m2f_terms", spy)
    extra = (*SEMANTIC, "methods=[decoder_only]", "task.head=queries", "task.queries=3", "eval.select=last")
    a, b, _, _ = _interrupted_then_resumed(tmp_path, monkeypatch, *extra)
    assert len(seeds) == 4 + 2 + 2 and len(set(seeds[:4])) == 4  # A: 2 epochs x 2 steps; B: epoch 1, then 2
    assert seeds[4:] == seeds[:4]
    assert b["task_head"]["mask_tokens"] == 3


def test_hqsam_is_refused_on_a_semantic_dataset_before_any_run(tmp_path):
    cfg = sweep(tmp_path, *SEMANTIC, "methods=[hqsam]")
    with pytest.raises(ConfigError, match="hqsam.*semantic dataset.*multi-class"):
        validate_names(cfg, weights=False)


def test_a_loss_that_does_not_fit_the_head_is_a_config_error(tmp_path):
    cfg = sweep(tmp_path, *SEMANTIC, "methods=[decoder_only]", "task.loss=m2f_sum")  # clean: the per-class head
    with pytest.raises(ConfigError, match="task.loss=m2f_sum does not fit task.head=per_class"):
        execute_run(single_run(cfg), cfg.runs_dir)


@pytest.mark.parametrize("protocol,head", [("convlora", "queries"), ("clean", "per_class")])
def test_bundled_litemedsam_trains_a_semantic_head(tmp_path, protocol, head):
    """The CPU demo setting (sweep demo_semantic) on the real pretrained weights, one step per head."""
    cfg = sweep(
        tmp_path,
        *SEMANTIC,
        "backbone.name=litemedsam",
        "backbone.img_size=128",
        "methods=[lora]",
        f"protocol={protocol}",
        "train.epochs=1",
        "train.max_steps_per_epoch=1",
        "data.synth.val_size=2",
        "data.synth.test_size=2",
    )
    record = execute_run(single_run(cfg), cfg.runs_dir)
    assert record["task_head"]["head"] == head
    assert record["provenance"]["student_weights"]["random_init"] is False  # the bundled checkpoint
    assert 0 <= record["metrics"]["miou"] <= 1
