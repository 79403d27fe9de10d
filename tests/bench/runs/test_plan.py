"""``plan``: FLOPs counted on the real (tiny) architecture against a hand count, planned steps against a real run,
the gpu= choices and the measured-MFU store."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from bench.app.cli import main
from bench.config import ConfigError
from bench.hardware import flops as hw
from bench.runs import plan_cost
from bench.runs.plan import build_plan, compute_for, held_out, parse_plan_args
from bench.runs.results import RunDir
from bench.runs.sweep import load_config
from bench.train.trainer import compute_loss
from tests.tiny_runs import single_run, sweep_args

# tiny_sam (bench/backbones/tiny.py): 64-px input, 8-px patches -> an 8x8 token grid; width 32, 2 heads of 16,
# MLP ratio 2, 4 blocks, windows of 4x4 tokens in blocks 0 and 2, global attention in blocks 1 and 3, decomposed
# relative positions (two einsums per block)
B, GRID, C, HEADS, HIDDEN, WINDOW = 4, 8, 32, 2, 64, 4
WINDOWED, GLOBAL = 2, 2


def mm(m: int, n: int, k: int) -> int:
    """FLOPs of an (m x k) @ (k x n) product."""
    return 2 * m * n * k


def hand_counts() -> tuple[int, int]:
    """Forward FLOPs of the encoder's attention and MLP modules over all blocks at batch ``B``."""
    rows = B * GRID * GRID  # every token once (the 4x4 windows tile the 8x8 grid without padding)
    linear = mm(rows, 3 * C, C) + mm(rows, C, C)  # qkv, proj
    d = C // HEADS

    def attention(groups: int, side: int) -> int:  # groups = batch x windows; side x side tokens each
        tokens = side * side
        qk_av = 2 * groups * HEADS * mm(tokens, tokens, d)  # q @ k^T and attn @ v
        rel_pos = 2 * groups * HEADS * side * mm(side, side, d)  # "bhwc,hkc->bhwk" and "bhwc,wkc->bhwk"
        return qk_av + rel_pos

    windows = (GRID // WINDOW) ** 2
    attn = 4 * linear + WINDOWED * attention(B * windows, WINDOW) + GLOBAL * attention(B, GRID)
    mlp = 4 * (mm(rows, HIDDEN, C) + mm(rows, C, HIDDEN))
    return attn, mlp


def tiny_run(tmp_path, method: str, *extra: str):
    run = single_run(load_config(sweep_args(tmp_path, f"methods=[{method}]", "train.batch_size=4", *extra)))
    return plan_cost.architecture_only(run)


def test_the_fake_count_of_the_attention_and_mlp_is_the_hand_count(tmp_path):
    run = tiny_run(tmp_path, "full")
    mode = hw.fake_mode()
    parts = plan_cost._parts(run, mode)
    with mode:
        images = plan_cost.binary_batch(run, 64)["image"]
        forward = hw.count(lambda: parts.student.encode(images))
    attn, mlp = hand_counts()
    assert forward.by_module["Block.attn"] == attn
    assert forward.by_module["Block.mlp"] == mlp


def test_a_full_step_costs_between_two_and_three_forwards(tmp_path):
    """Backward of a matmul or convolution is 1x its forward when one operand needs a gradient, 2x when both do:
    with every parameter trainable (``full``) a step is in (2, 3] forwards, and the encoder blocks' matmuls alone
    (both operands need gradients) are exactly 3x their forward."""
    run = tiny_run(tmp_path, "full")
    cost = plan_cost.count_cost(run)
    mode = hw.fake_mode()
    parts = plan_cost._parts(run, mode)
    parts.student.requires_grad_(False)  # the forward alone
    with mode, torch.no_grad():
        batch = plan_cost.binary_batch(run, 64)
        forward = hw.count(lambda: compute_loss(parts, batch, True, plan_cost.CPU, run.train)).flops
    attn, mlp = hand_counts()
    assert cost.step_flops is not None
    assert 3 * (attn + mlp) < cost.step_flops
    assert 2 * forward < cost.step_flops <= 3 * forward


def encoder_forward() -> int:
    """Forward FLOPs of the whole tiny_sam encoder at batch ``B``: patch embedding (8x8 conv, 3 -> 32), the
    blocks, the neck (1x1 conv, then 3x3 conv, 32 -> 32; its LayerNorms are not matmuls)."""
    positions = B * GRID * GRID
    patch = mm(positions, C, 3 * 8 * 8)
    neck = mm(positions, 32, C) + mm(positions, 32, 32 * 9)
    attn, mlp = hand_counts()
    return patch + attn + mlp + neck


def test_a_cached_teacher_costs_no_encoder_forward(tmp_path):
    """adapter+infosam over adapter: with the encoder cache (the default) the teacher's whole encoder forward
    (the hand count) is not in the step; its decoder pass and the distiller still are."""
    cost = {
        (method, cache): plan_cost.count_cost(tiny_run(tmp_path, method, f"data.encoder_cache={cache}"))
        for method in ("adapter", "adapter+infosam")
        for cache in ("true", "false")
    }
    flops = {key: c.step_flops for key, c in cost.items()}
    cached = flops["adapter+infosam", "true"] - flops["adapter", "true"]
    uncached = flops["adapter+infosam", "false"] - flops["adapter", "false"]
    assert uncached - cached == encoder_forward()
    assert cached > 0  # the teacher's decoder and the relation module


def test_the_planned_steps_are_the_steps_a_real_run_takes(tmp_path):
    # 10 training images at batch 4 with drop_last: 2 steps an epoch (not 10 / 4 = 2.5); every step logged
    extra = ("data.synth.train_size=10", "train.batch_size=4", "train.log_every=1", "train.epochs=3")
    args = sweep_args(tmp_path, *extra)
    assert main(["run", *args]) == 0
    cfg = load_config(args)
    run = single_run(cfg)
    rd = RunDir(cfg.runs_dir, run)
    with open(rd.path / "train_log.csv") as fh:
        logged = list(csv.DictReader(fh))
    record = json.loads((rd.path / "metrics.json").read_text())
    plans, _, _ = build_plan(["gpu=cpu", *args])
    (planned,) = plans
    assert planned.steps == len(logged) == 3 * 2
    assert planned.micro_steps == planned.steps
    assert planned.splits.test == record["num_test_images"] == 4
    assert planned.splits.train == record["num_train_images"] == 10
    assert planned.val_passes == len(record["selection"]["candidates"]) == 3
    assert planned.test_passes == 1


def test_plan_writes_nothing_into_runs(tmp_path):
    args = sweep_args(tmp_path, runs="untouched")
    plans, compute, _ = build_plan(["gpu=h100", "mfu=0.5", *args])
    assert not (tmp_path / "untouched").exists()
    assert compute.mfu == 0.5 and plans[0].flops and plans[0].flops > 0


def test_a_bad_gpu_name_lists_the_choices():
    with pytest.raises(ConfigError, match="gpu='h300'.*h100, h200, a100, cpu"):
        parse_plan_args(["sweep=demo", "gpu=h300"])
    assert main(["plan", "sweep=demo", "gpu=h300"]) == 2


def test_the_stored_gpu_check_mfu_is_used(tmp_path, monkeypatch):
    store = tmp_path / "mfu.json"
    monkeypatch.setenv(hw.MFU_ENV, str(store))
    assumed = compute_for("h100", None)
    assert assumed.mfu == hw.DEFAULT_MFU and "assumed" in assumed.text
    from tools.gpu_check import store_result

    result = {
        "device": "NVIDIA H100 80GB HBM3",
        "adapter_step": {"mfu": 0.42},
        **{k: 0 for k in ("backbone", "img_size", "batch_size", "precision", "torch")},
    }
    assert store_result(result) == store
    measured = compute_for("h100", None)
    date = json.loads(store.read_text())["h100"]["date"]
    assert measured.mfu == 0.42 and f"measured on {date}" in measured.text
    assert measured.peak == 989e12 and measured.rate == pytest.approx(0.42 * 989e12)
    assert compute_for("a100", None).mfu == hw.DEFAULT_MFU  # another GPU kind keeps the assumption


def test_the_held_out_count_is_the_one_the_splits_draw():
    from datasets._splits import draw_validation

    for pool in (1, 2, 7, 498, 1450, 4040):
        for fraction in (0.0, 0.1, 0.2):
            names = [f"n{i}" for i in range(pool)]
            assert held_out(pool, fraction) == len(draw_validation(names, fraction))


def conv_lora_expert_term(r: int = 4, experts: int = 8) -> int:
    """Forward FLOPs of tiny_sam's Conv-LoRA experts at batch ``B`` under uniform top-1 routing, by hand: every
    block's qkv bottleneck is a set of r-channel maps (windowed blocks: B x 4 windows of 4x4, global blocks: B
    maps of 8x8); expert i runs a 3x3 conv r -> r on the map up-sampled xi, (i*side)^2 positions, and takes each
    map with probability 1 / M."""
    maps = {4: B * (GRID // WINDOW) ** 2, 8: B}  # side -> maps per block
    total = 0
    for side, n in maps.items():
        per_expert = [mm((i * side) ** 2, r, 9 * r) for i in range(1, experts + 1)]
        total += (WINDOWED if side == WINDOW else GLOBAL) * n * sum(per_expert) // experts
    return total


def test_conv_lora_costs_lora_plus_its_experts_under_uniform_routing(tmp_path):
    """Conv-LoRA = fused LoRA of the same r + the gate's logits (pooled (N, r) @ (r, M) per block, no noise when
    scoring) + the experts' expected convolutions: checked on the scored image, where nothing else differs."""
    convlora = plan_cost.count_cost(tiny_run(tmp_path, "convlora"))
    lora = plan_cost.count_cost(tiny_run(tmp_path, "lora", "peft.form=fused"))
    assert convlora.eval_flops_per_image is not None and lora.eval_flops_per_image is not None
    gate = WINDOWED * mm(B * (GRID // WINDOW) ** 2, 8, 4) + GLOBAL * mm(B, 8, 4)
    extra = (convlora.eval_flops_per_image - lora.eval_flops_per_image) * B
    assert extra == pytest.approx(conv_lora_expert_term() + gate)
    assert convlora.step_flops is not None and lora.step_flops is not None
    # training: the experts' forward, input gradient and weight gradient
    assert convlora.step_flops - lora.step_flops >= 3 * conv_lora_expert_term()


def test_a_tiny_sam2_run_is_counted(tmp_path):
    cost = plan_cost.count_cost(tiny_run(tmp_path, "adapter", "backbone.name=tiny_sam2"))
    assert cost.step_flops and cost.step_flops > 0 and cost.eval_flops_per_image and cost.eval_flops_per_image > 0


def test_a_semantic_run_is_counted(tmp_path):
    """synth_shapes: the task's head and label-map batch; its CE + Dice loss reads values, so a stand-in carries
    the backward (no matmul in the loss itself)."""
    run = tiny_run(tmp_path, "lora", "datasets=[synth_shapes]")
    cost = plan_cost.count_cost(run)
    binary = plan_cost.count_cost(tiny_run(tmp_path, "lora"))
    assert cost.step_flops and binary.step_flops and cost.step_flops > 0.5 * binary.step_flops
    assert cost.eval_flops_per_image and cost.eval_flops_per_image > 0


def test_the_also_tested_images_are_in_the_plan(tmp_path):
    """eval.also_test: each extra test set is scored once, at the reported checkpoint."""
    args = sweep_args(tmp_path, "data.synth.test_size=4")
    plain, _, _ = build_plan(["gpu=cpu", *args])
    also, _, _ = build_plan(["gpu=cpu", *args, "eval.also_test=[synth_leaf]"])
    assert also[0].also_test == 4
    assert also[0].eval_images == plain[0].eval_images + 4
    assert also[0].flops == pytest.approx(plain[0].flops + 4 * plain[0].cost.eval_flops_per_image)
