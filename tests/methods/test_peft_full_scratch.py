"""``full`` (every parameter trains from the pretrained weights) and ``scratch`` (random init, then the same):
what trains, the refusal of ``scratch`` on full-size backbones without ``backbone.random_init=true`` (before any
checkpoint is looked up), the re-initialisation, its provenance marker and the ViT-H count."""

from __future__ import annotations

import pytest
import torch

from bench.app.cli import validate_names
from bench.backbones import BACKBONES, build_backbone
from bench.config import BackboneConfig, ConfigError, DataConfig, RunConfig
from bench.contracts.peft import build_peft, trainable_parameters, unused_decoder_modules
from bench.runs.provenance import by_design_notes, mixed_provenance, weights_record
from bench.runs.runner import build_student
from bench.runs.sweep import load_config
from methods.peft.full import unreached_parameters

from .test_peft_contract import _one_step, pretrained

SAM_VIT_H_TOTAL = 641_090_608  # the Conv-LoRA table's 641.09 M
SAM_VIT_H_UNUSED = 3 * (2 * (256 * 256 + 256) + 256 * 32 + 32) + (2 * (256 * 256 + 256) + 256 * 4 + 4)  # 0.552 M


def _unused(model: torch.nn.Module) -> set[int]:
    return {id(p) for m in unused_decoder_modules(model) for p in m.parameters()}


@pytest.mark.parametrize("backbone", ["tiny_sam", "tiny_sam2", "tiny_tinyvit"])
@pytest.mark.parametrize("name", ["full", "scratch"])
def test_every_parameter_trains_but_the_parts_no_forward_reaches(name, backbone):
    model = pretrained(backbone)
    total = sum(p.numel() for p in model.parameters())
    targeted = build_peft(name, {}).apply(model)
    unused = _unused(model) | {id(p) for p in unreached_parameters(model)}
    assert unused and {id(p) for p in model.prompt_encoder.mask_downscaling.parameters()} <= unused
    assert targeted == ["image_encoder", "prompt_encoder", "mask_decoder"]
    assert all(p.requires_grad != (id(p) in unused) for p in model.parameters())
    assert trainable_parameters(model) == total - sum(p.numel() for p in model.parameters() if id(p) in unused)
    grads = _one_step(model)
    assert any(n.startswith("image_encoder.") for n in grads) and any(n.startswith("mask_decoder.") for n in grads)


def test_full_keeps_the_pretrained_weights():
    model, ref = pretrained("tiny_sam"), pretrained("tiny_sam")
    build_peft("full", {}).apply(model)
    for (n, p), (_, q) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(p, q), n
    assert model.weights_id == "tiny_sam_seed0" and not weights_record(model)["random_by_method"]


def _validate(*overrides: str) -> None:
    validate_names(load_config(["sweep=smoke", "methods=[scratch]", "datasets=[synth_polyp]", *overrides]))


@pytest.mark.parametrize("backbone", ["sam_vit_h", "sam2_hiera_t", "mobilesam", "litemedsam"])
def test_scratch_refuses_a_full_size_backbone_without_the_switch(backbone, tmp_path, monkeypatch):
    def no_lookup(*args, **kwargs):
        raise AssertionError("a checkpoint was looked up before the refusal")

    BACKBONES.names()  # import the builders first: they bind resolve_checkpoint at import
    monkeypatch.setattr("bench.contracts.weights.resolve_checkpoint", no_lookup)
    with pytest.raises(ConfigError) as info:
        _validate(f"backbone={backbone}", f"backbone.checkpoints_dir={tmp_path}")
    text = str(info.value)
    assert "RANDOM" in text and "backbone.random_init=true" in text and backbone in text


def test_scratch_is_accepted_with_the_switch_and_on_test_backbones(tmp_path):
    _validate("backbone=sam_vit_h", "backbone.random_init=true", f"backbone.checkpoints_dir={tmp_path}")  # no file
    _validate("backbone=tiny_sam")
    validate_names(load_config(["sweep=convlora_table", f"backbone.checkpoints_dir={tmp_path}"]), weights=False)


def test_scratch_refuses_official_weights_that_bypassed_the_launcher():
    with torch.device("meta"):
        model = build_backbone(BackboneConfig(name="sam_vit_h", random_init=True))
    model.weights_id = "a1b2c3d4e5f60718"  # as if loaded from the official checkpoint
    with pytest.raises(ConfigError, match="backbone.random_init=true"):
        build_peft("scratch", {}).apply(model)


def test_scratch_reinitialises_every_resettable_module_and_marks_the_weights():
    model, ref = pretrained("tiny_sam"), pretrained("tiny_sam")
    torch.manual_seed(0)
    build_peft("scratch", {}).apply(model)
    before, after = ref.state_dict(), model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # every Linear/Conv/Embedding weight is re-drawn (norms reset to ones/zeros, which tiny_sam's encoder has)
    redrawn = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    assert redrawn and redrawn <= changed, sorted(redrawn - changed)[:5]
    assert "mask_decoder.iou_token.weight" in changed  # perturbed in the stand-in, re-drawn here
    moved = sum(after[k].numel() for k in changed)
    assert moved > 0.9 * sum(p.numel() for p in ref.parameters())
    record = weights_record(model)
    assert record["random_init"] and record["random_by_method"] and record["sha256"] is None
    # the redraw follows the seed: the run's seed decides the random model
    again, other = pretrained("tiny_sam"), pretrained("tiny_sam")
    torch.manual_seed(0)
    build_peft("scratch", {}).apply(again)
    torch.manual_seed(1)
    build_peft("scratch", {}).apply(other)
    w = "image_encoder.blocks.0.attn.qkv.weight"
    assert torch.equal(again.state_dict()[w], after[w]) and not torch.equal(other.state_dict()[w], after[w])


def test_scratch_builds_as_a_run_student_on_tiny_sam():
    run = RunConfig(method="scratch", backbone=BackboneConfig(name="tiny_sam"), data=DataConfig(encoder_cache=False))
    student, _, targeted = build_student(run)
    assert "image_encoder" in targeted and student.frozen_prefix() == 0
    assert weights_record(student)["random_by_method"]
    reference = build_backbone(BackboneConfig(name="tiny_sam"))
    w = "image_encoder.patch_embed.proj.weight"
    assert not torch.equal(student.state_dict()[w], reference.state_dict()[w])


def test_scratch_on_sam_vit_h_trains_the_table_count_but_the_unused_decoder_parts():
    with torch.device("meta"):
        model = build_backbone(BackboneConfig(name="sam_vit_h", random_init=True))
    assert sum(p.numel() for p in model.parameters()) == SAM_VIT_H_TOTAL
    assert round(SAM_VIT_H_TOTAL / 1e6, 2) == 641.09
    build_peft("scratch", {}).apply(model)
    trained = trainable_parameters(model)
    mask_prompt_branch = (4 * 4 + 4) + 2 * 4 + (16 * 4 * 4 + 16) + 2 * 16 + (16 * 256 + 256)  # mask_downscaling
    assert trained == SAM_VIT_H_TOTAL - SAM_VIT_H_UNUSED - mask_prompt_branch == 640_533_888


def _record(run: str, weights: dict) -> dict:
    return {"run": run, "provenance": {"commit": "a" * 40, "dirty": False, "packages": {}, "student_weights": weights}}


def test_reports_name_scratch_runs_instead_of_warning():
    pretrained_w = {"backbone": "sam_vit_h", "sha256": "s1", "weights_id": "s1", "random_init": False}
    scratch_w = {**pretrained_w, "sha256": None, "weights_id": "random", "random_init": True, "random_by_method": True}
    records = [_record("lora_s0", pretrained_w), _record("scratch_s0", scratch_w)]
    assert mixed_provenance(records) == []  # neither "RANDOM weights" nor "different sam_vit_h weights"
    assert by_design_notes(records) == ["1 run(s) trained from scratch (random init by design): scratch_s0"]
    accidental = _record("lora_s1", {**scratch_w, "random_by_method": False})
    notes = mixed_provenance([*records, accidental])
    assert any("RANDOM" in n and "lora_s1" in n and "scratch_s0" not in n for n in notes)
