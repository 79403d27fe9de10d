"""Memory switches: activation checkpointing, gradient accumulation (and its refusal), peak memory and steps/s."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from bench.config import ConfigError
from bench.hardware.memory import checkpoint_trainable_blocks, micro_batches
from bench.runs.launcher import launch
from bench.runs.results import RunDir
from bench.runs.runner import build_parts
from bench.runs.sweep import run_configs, run_hash
from tests.tiny_runs import sweep

ARGS = ("train.epochs=2", "train.batch_size=4", "train.log_every=1", "data.synth.train_size=8")


def _run(tmp_path, *extra, runs: str):
    cfg = sweep(tmp_path, *ARGS, *extra, runs=runs)
    (outcome,) = launch(cfg)
    assert outcome.error is None, outcome.error
    path = RunDir(cfg.runs_dir, outcome.run).path
    with open(path / "train_log.csv") as f:
        log = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return outcome.run, log, json.loads((path / "metrics.json").read_text())


def _close_logs(a, b, tol):
    assert [(r["epoch"], r["step"]) for r in a] == [(r["epoch"], r["step"]) for r in b]
    for r1, r2 in zip(a, b):
        for key in r1:
            assert abs(r1[key] - r2[key]) <= tol * max(1.0, abs(r1[key])), (key, r1, r2)


def test_checkpointing_recomputes_trainable_blocks_and_keeps_the_result(tmp_path):
    cfg = sweep(tmp_path, *ARGS)
    parts = build_parts(run_configs(cfg)[0], torch.device("cpu"))
    blocks = list(parts.student.encoder_blocks())
    trainable = [b for b in blocks if any(p.requires_grad for p in b.parameters())]
    assert 0 < len(trainable) < len(blocks)  # the adapter leaves blocks 0-1 frozen
    calls = []
    trainable[-1].register_forward_pre_hook(lambda *_: calls.append(1))
    forwards = []
    inner = trainable[-1].forward
    trainable[-1].forward = lambda *a, **k: (forwards.append(1), inner(*a, **k))[1]
    assert checkpoint_trainable_blocks(parts.student) == len(trainable)
    x = torch.randn(2, 3, parts.student.img_size, parts.student.img_size)
    z, _ = parts.student_encoder(x)
    z.float().sum().backward()
    assert len(calls) == 1 and len(forwards) == 2  # hooks once, the block's forward again in the backward

    # Recomputation runs the same float operations: identical losses and metrics, and the same run hash.
    plain_run, plain, plain_m = _run(tmp_path, runs="plain")
    ckpt_run, ckpt, ckpt_m = _run(tmp_path, "train.grad_checkpoint=true", runs="ckpt")
    assert run_hash(plain_run) == run_hash(ckpt_run)
    assert plain == ckpt and plain_m["metrics"] == ckpt_m["metrics"]


def test_accumulation_of_per_sample_losses_gives_the_full_batch_step(tmp_path):
    _, full, full_m = _run(tmp_path, runs="full")
    _, accum, accum_m = _run(tmp_path, "train.grad_accumulation=2", runs="accum")
    # two backward passes summed instead of one: rounding-level differences, amplified a little by Adam
    _close_logs(full, accum, 1e-5)
    for key, value in full_m["metrics"].items():
        assert abs(value - accum_m["metrics"][key]) <= 1e-4, key


def test_batch_level_losses_refuse_accumulation_with_the_reason(tmp_path):
    cfg = sweep(tmp_path, *ARGS, "methods=[adapter+infosam]", "train.grad_accumulation=2")
    with pytest.raises(ConfigError, match=r"refused for adapter\+infosam: .* loss over the whole batch"):
        launch(cfg)
    with pytest.raises(ConfigError, match="does not split train.batch_size=4"):
        launch(sweep(tmp_path, *ARGS, "train.grad_accumulation=3"))


def test_micro_batches_cover_a_cut_batch_in_order():
    batch = {"valid": list(range(5)), "name": list("abcde")}
    parts = micro_batches(batch, 2)
    assert [p["name"] for p in parts] == [["a", "b"], ["c", "d", "e"]]


def test_metrics_record_peak_memory_and_steps_per_second(tmp_path):
    _, log, record = _run(tmp_path, runs="mem")
    assert record["peak_memory_kind"] == "cpu_peak_rss"
    assert 50 < record["peak_memory_mb"] < 24 * 1024  # a torch process's RSS, below this machine's RAM
    # 2 epochs x 2 steps in the training loop's time (both rounded in the record)
    assert record["train_steps_per_second"] == pytest.approx(4 / record["train_loop_seconds"], rel=0.05)
