"""The public Conv-LoRA training recipe under protocol=convlora: gradient clipping at norm 1, AutoMM's
weight-decay groups, micro-batches of one image (the MoE balancing loss per image) and the checkpoint choice
scored with the convlora definitions."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bench.backbones import build_backbone
from bench.config import BackboneConfig
from bench.config.protocols import get_protocol
from bench.contracts.peft import build_peft
from bench.data.batches import take
from bench.data.encoders import CachedEncoder
from bench.train.param_groups import decay_exempt_names
from bench.train.trainer import TrainParts, compute_loss, make_optimizer, train_step
from tests.tiny_runs import single_run, sweep

_MODEL: dict[str, nn.Module] = {}


def _convlora_run(tmp_path):
    return single_run(sweep(tmp_path, "protocol=convlora", "methods=[convlora]"))


def _parts(seed: int = 0) -> TrainParts:
    if "m" not in _MODEL:
        _MODEL["m"] = build_backbone(BackboneConfig(name="tiny_sam", mask_tokens=1))
    backbone = copy.deepcopy(_MODEL["m"])
    peft = build_peft("convlora", {"r": 3, "alpha": 32.0, "num_experts": 8})
    peft.apply(backbone)
    g = torch.Generator().manual_seed(seed)
    for name, p in backbone.named_parameters():  # gates and B off zero: routing and gradients that depend on x
        if p.requires_grad and ("w_gate" in name or "w_noise" in name or "lora_B" in name):
            p.data.normal_(0, 0.5, generator=g)
    backbone.eval()
    return TrainParts(
        student=backbone, student_encoder=CachedEncoder(backbone, None, peft.feature_blocks(backbone)), peft=peft
    )


def _batch(parts: TrainParts, n: int = 4) -> dict:
    g = torch.Generator().manual_seed(1)
    s = parts.student.img_size
    return {
        "image": (torch.rand(n, 3, s, s, generator=g) - 0.5) / 0.25,
        "target": (torch.rand(n, s, s, generator=g) < 0.3).float(),
        "valid": torch.ones(n, dtype=torch.bool),
    }


def test_convlora_preset_sets_the_public_recipe(tmp_path):
    run = _convlora_run(tmp_path)
    assert (run.train.grad_clip, run.train.weight_decay_groups) == (1.0, "automm")
    assert (run.train.grad_accumulation, run.train.batch_size) == (4, 4)  # 4 micro-batches of 1 image
    clean = single_run(sweep(tmp_path, "methods=[convlora]"))
    assert (clean.train.grad_clip, clean.train.weight_decay_groups, clean.train.grad_accumulation) == (None, "all", 1)


def test_a_convlora_step_clips_the_global_norm_at_one(tmp_path, monkeypatch):
    cfg = _convlora_run(tmp_path).train
    parts = _parts()
    params = parts.trainable()
    optimizer, _ = make_optimizer(cfg, params, 8, 2, parts.decay_exempt())
    calls, real = [], torch.nn.utils.clip_grad_norm_

    def total(ps):
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ps if p.grad is not None])))

    def spy(ps, max_norm, *args, **kwargs):
        ps = list(ps)
        scale = 5.0 / total(ps)  # the tiny model's gradient made larger than the bound
        for p in ps:
            if p.grad is not None:
                p.grad.mul_(scale)
        norm = real(ps, max_norm, *args, **kwargs)
        calls.append((len(ps), max_norm, float(norm), total(ps)))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    train_step(parts, _batch(parts), None, torch.device("cpu"), cfg, optimizer, params)
    ((n, max_norm, before, after),) = calls  # once per optimizer step, after the 4 micro-batches
    assert (n, max_norm) == (len(params), 1.0)
    assert before == pytest.approx(5.0, rel=1e-4) and after == pytest.approx(1.0, rel=1e-4)


def test_automm_weight_decay_exempts_biases_and_norm_modules():
    class Custom(nn.Module):  # a norm layer of its own class (SAM's LayerNorm2d, HF's SamLayerNorm)
        def __init__(self) -> None:
            super().__init__()
            self.weight, self.bias = nn.Parameter(torch.ones(4)), nn.Parameter(torch.zeros(4))

    model = nn.Module()
    model.lin, model.ln, model.bn = nn.Linear(4, 4), nn.LayerNorm(4), nn.BatchNorm2d(4)
    model.gn, model.custom, model.emb = nn.GroupNorm(2, 4), Custom(), nn.Embedding(3, 4)
    model.block = nn.Sequential(nn.Linear(4, 4, bias=False), nn.LayerNorm(4))
    model.cls_token, model.rel_pos_bias_table = nn.Parameter(torch.zeros(4)), nn.Parameter(torch.zeros(4))
    assert decay_exempt_names(model) == {
        "lin.bias",
        "ln.weight",
        "ln.bias",
        "bn.weight",
        "bn.bias",
        "gn.weight",
        "gn.bias",
        "custom.bias",
        "block.1.weight",
        "block.1.bias",
        "cls_token",
        "rel_pos_bias_table",  # "bias" in the name: exempt, as AutoMM's substring rule
    }


def test_automm_groups_of_a_convlora_model_and_what_they_decay(tmp_path):
    cfg = _convlora_run(tmp_path).train
    parts = _parts()
    params = parts.trainable()
    named = [(n, p) for n, p in parts.student.named_parameters() if p.requires_grad]
    modules = dict(parts.student.named_modules())
    norm_types = (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)
    exempt = [n for n, _ in named if "bias" in n or isinstance(modules[n.rpartition(".")[0]], norm_types)]
    assert any("moe.experts" in n for n in exempt) and any("norm" in n for n in exempt)
    assert not any("lora_A" in n or "lora_B" in n or "w_gate" in n for n in exempt)
    optimizer, _ = make_optimizer(cfg, params, 8, 2, parts.decay_exempt())
    assert isinstance(optimizer, torch.optim.AdamW)
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    assert sizes == [len(params) - len(exempt), len(exempt)]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-4, 0.0]
    # a step with zero gradients: AdamW's decoupled decay shrinks the first group only
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    ids = {id(p) for p in optimizer.param_groups[1]["params"]}
    for p, old in zip(params, before):
        if id(p) in ids:
            assert torch.equal(p.detach(), old)
        elif old.abs().max() > 0:
            torch.testing.assert_close(p.detach(), old * (1 - cfg.lr * 1e-4))
    one, _ = make_optimizer(cfg.__class__(**{**vars(cfg), "weight_decay_groups": "all"}), params, 8, 2)
    assert [len(g["params"]) for g in one.param_groups] == [len(params)]  # the default: one group


def test_micro_batches_compute_the_balancing_loss_per_image(tmp_path):
    cfg = _convlora_run(tmp_path).train
    device = torch.device("cpu")
    parts = _parts()
    batch = _batch(parts)
    params = parts.trainable()
    torch.manual_seed(7)  # the gate noise: the same draws in the same order as the micro-batched step
    singles = [float(compute_loss(parts, take(batch, [i]), None, device, cfg)["moe"].detach()) for i in range(4)]
    for p in params:
        p.grad = None
    optimizer = torch.optim.SGD(params, lr=0.0)
    torch.manual_seed(7)
    _, terms = train_step(parts, batch, None, device, cfg, optimizer, params)
    assert float(terms["moe"]) == pytest.approx(sum(singles) / 4, rel=1e-5)
    torch.manual_seed(7)
    whole = cfg.__class__(**{**vars(cfg), "grad_accumulation": 1})
    _, batch_terms = train_step(parts, batch, None, device, whole, optimizer, params)
    assert abs(float(batch_terms["moe"].detach()) - float(terms["moe"])) > 1e-3 * abs(float(terms["moe"]))
    assert len({round(v, 6) for v in singles}) > 1  # the images are routed differently


def test_convlora_checkpoint_choice_scores_the_families_metric_under_convlora(tmp_path, monkeypatch):
    from bench.eval.selection import EpochSelector
    from bench.runs import runner

    protocol = get_protocol("convlora")
    assert protocol.selection_metrics("val_best") == "convlora"
    run = _convlora_run(tmp_path)
    ctx = SimpleNamespace(
        run=run,
        parts=SimpleNamespace(task=None, state=dict),
        report_metrics=protocol.metrics_for("shadow", ("ber",)),
        protocol=protocol,
        builder=lambda split, data: [0],
        rd=SimpleNamespace(name="sbu"),
    )
    monkeypatch.setattr(runner, "_eval_dataset", lambda ctx, data: [0, 1])
    sel = runner._epoch_selector(ctx, run.train)
    assert isinstance(sel, EpochSelector)
    assert (sel.rule, sel.metric, sel.definition) == ("val_best", "ber", "convlora")
    # clean and convlora disagree: the convlora BER decides, lower is better
    scores = iter(
        [{"clean": {"ber": 0.1}, "convlora": {"ber": 0.4}}, {"clean": {"ber": 0.3}, "convlora": {"ber": 0.2}}]
    )
    sel.evaluate = lambda: ([], next(scores))
    sel.after_epoch(1)
    sel.after_epoch(2)
    assert sel.best_epoch == 2
    polyp = protocol.metrics_for("polyp", ("sm",))[0]
    assert (polyp, protocol.metrics_for("leaf", ())[0], protocol.metrics_for("skin", ())[0]) == ("sm", "iou", "iou")
