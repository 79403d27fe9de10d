"""Distillation baselines inside the trainer, on tiny_sam: gradient routes, what a short run changes,
a frozen teacher, and a wider, deeper teacher than the student (Fig. 4's ViT-L teacher / ViT-B student)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.backbones import BACKBONES, build_backbone
from bench.backbones.sam import SamViT
from bench.backbones.tiny import tiny_vit_encoder
from bench.config import BackboneConfig
from bench.contracts.distill import DISTILLERS
from bench.data.batches import batch_prompts
from bench.runs.results import RunDir
from bench.runs.runner import build_parts, execute_run
from bench.runs.sweep import load_config, run_configs
from bench.train.trainer import compute_loss, model_features
from tests.tiny_runs import sweep_args

from .test_infosam_training import checksum, one_batch

DISTILLER_NAMES = DISTILLERS.names()
CHAINS = ["tinysam+rm", "lora+mobilesam+rm"]


def build_tiny_sam_wide(cfg: BackboneConfig) -> SamViT:
    """tiny_sam's prompt encoder and decoder (embedding width 32) behind a wider (48), deeper (6 blocks,
    3 stages) encoder: the shape of a ViT-L teacher for a ViT-B student."""
    tiny = build_backbone(BackboneConfig(name="tiny_sam"))
    with torch.random.fork_rng():
        torch.manual_seed(1)
        encoder = tiny_vit_encoder(embed_dim=48, depth=6, global_attn_indexes=(1, 3, 5))
    model = SamViT(encoder, tiny.prompt_encoder, tiny.mask_decoder, img_size=64)
    model.name = cfg.name
    model.weights_id = "tiny_sam_wide_test_seed1"
    return model


if "tiny_sam_wide" not in BACKBONES:
    BACKBONES.add("tiny_sam_wide", build_tiny_sam_wide)


def config(tmp_path, method, *extra):
    return load_config(sweep_args(tmp_path, "train.epochs=1", f"methods=[{method}]", *extra))


def distill_gradients(tmp_path, method, *extra):
    """Backward of the distillation terms alone (no structure loss) on one batch; returns the parts."""
    run = run_configs(config(tmp_path, method, *extra))[0]
    parts = build_parts(run, torch.device("cpu"))
    terms = compute_loss(parts, one_batch(run, parts), True, torch.device("cpu"), run.train)
    distill = {k: v for k, v in terms.items() if k != "seg"}
    assert distill and all(torch.isfinite(v) for v in distill.values()), terms
    torch.stack(list(distill.values())).sum().backward()
    return parts, distill


@pytest.mark.parametrize("method", DISTILLER_NAMES + CHAINS)
def test_distill_gradients_reach_only_the_student_and_the_distiller(tmp_path, method):
    parts, _ = distill_gradients(tmp_path, method, "train.epochs=2")
    for name, p in parts.student.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name
    assert all(p.grad is None and not p.requires_grad for p in parts.teacher.parameters())
    # the student is a copy of the teacher at step 0 (zero-init adapters): features can still differ
    # through the fp16 cache rounding, so at least one trainable tensor gets a gradient
    grads = [p.grad for p in parts.student.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("method", DISTILLER_NAMES + CHAINS)
def test_a_short_run_changes_only_the_student_and_the_distiller(tmp_path, monkeypatch, method):
    import bench.runs.runner

    seen = {}
    original = bench.runs.runner.build_parts

    def spy(run, device, task=None):
        parts = original(run, device, task)
        seen["parts"] = parts
        seen["teacher"] = checksum(parts.teacher)
        seen["student"] = {n: p.detach().clone() for n, p in parts.student.named_parameters()}
        seen["distiller"] = {n: p.detach().clone() for n, p in parts.distiller.named_parameters()}
        return parts

    monkeypatch.setattr(bench.runs.runner, "build_parts", spy)
    cfg = config(tmp_path, method)
    run = run_configs(cfg)[0]
    record = execute_run(run, cfg.runs_dir)
    parts = seen["parts"]
    assert checksum(parts.teacher) == seen["teacher"]
    changed_trainable = 0
    for name, p in parts.student.named_parameters():
        if p.requires_grad:
            changed_trainable += not torch.equal(p.detach(), seen["student"][name])
        else:
            assert torch.equal(p.detach(), seen["student"][name]), f"frozen {name} changed"
    assert changed_trainable > 0
    if seen["distiller"]:
        assert any(not torch.equal(p.detach(), seen["distiller"][n]) for n, p in parts.distiller.named_parameters())
    assert np.isfinite(list(record["metrics"].values())).all()
    header = (RunDir(cfg.runs_dir, run).path / "train_log.csv").read_text().splitlines()[0].split(",")
    assert set(parts.distiller(*_probe(parts, run))) <= set(header)


def _probe(parts, run):
    batch = one_batch(run, parts)
    with torch.no_grad():
        student, teacher = model_features(parts, batch["image"], batch_prompts(batch, True))
    return student, teacher, batch


@pytest.mark.parametrize("method", DISTILLER_NAMES + ["tinysam+rm"])
def test_a_wider_deeper_teacher_works(tmp_path, method):
    parts, terms = distill_gradients(tmp_path, method, "teacher.backbone=tiny_sam_wide", "train.epochs=2")
    assert parts.teacher.block_dims() == [48] * 6 and parts.teacher.stage_ends() == [1, 3, 5]
    assert parts.student.block_dims() == [32] * 4 and parts.student.stage_ends() == [1, 3]
    assert all(p.grad is None for p in parts.teacher.parameters())
    assert set(parts.distiller.teacher_blocks) <= {1, 3, 5}


def test_a_run_with_a_wider_teacher_completes(tmp_path):
    cfg = config(tmp_path, "reviewkd", "teacher.backbone=tiny_sam_wide")
    record = execute_run(run_configs(cfg)[0], cfg.runs_dir)
    assert record["status"] == "complete" and np.isfinite(list(record["metrics"].values())).all()
