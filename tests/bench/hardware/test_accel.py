"""Tests for bench/hardware/accel.py: the speed switches (channels-last, torch.compile, device) keep the model."""

from __future__ import annotations

import pytest
import torch

from bench.backbones import Prompts, build_backbone
from bench.config import BackboneConfig, ConfigError
from bench.hardware.accel import channels_last_convs, check_device, compile_backbone, images_to
from bench.runs.launcher import launch
from bench.runs.runner import build_parts
from bench.runs.sweep import load_config, run_name
from bench.train.trainer import compute_loss
from tests.methods.test_infosam_training import one_batch
from tests.tiny_runs import metric_values, single_run, sweep, sweep_args


def _forward(model, images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = images_to(images, torch.device("cpu"), channels_last)
    z, _ = model.encode(x)
    prompts = Prompts(boxes=torch.tensor([[5.0, 6.0, 45.0, 50.0]] * len(images)))
    return model.decode(z, prompts).logits


@pytest.mark.parametrize("name, size", [("litemedsam", 128), ("tiny_tinyvit", 128), ("tiny_sam", 64)])
def test_channels_last_convs_keep_the_outputs(name, size):
    model = build_backbone(BackboneConfig(name=name, img_size=size)).eval()
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = _forward(model, images, channels_last=False)
        n = channels_last_convs(model)
        after = _forward(model, images, channels_last=True)
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert n == len(convs) > 0
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    if name == "tiny_sam":  # a 4-D parameter that is not a convolution keeps its layout
        assert model.image_encoder.pos_embed.is_contiguous()
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_channels_last_run_matches_the_contiguous_run_and_shares_its_name(tmp_path):
    on = sweep(tmp_path, "backbone.name=tiny_tinyvit", "train.channels_last=true", runs="on", cache="c1")
    off = sweep(tmp_path, "backbone.name=tiny_tinyvit", "train.channels_last=false", runs="off", cache="c2")
    assert run_name(single_run(on)) == run_name(single_run(off))  # an execution switch, not hashed
    launch(on)
    launch(off)
    name = run_name(single_run(on))
    got, want = metric_values(tmp_path / "on" / name), metric_values(tmp_path / "off" / name)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-4), key


def test_compiled_model_gives_the_eager_loss_and_keeps_its_state_dict(tmp_path):
    run = single_run(load_config(sweep_args(tmp_path)))
    cpu = torch.device("cpu")
    eager = build_parts(run, cpu)
    batch = one_batch(run, eager)
    keys = list(eager.student.state_dict())
    want = compute_loss(eager, batch, True, cpu, run.train)["seg"]
    want.backward()
    compiled = build_parts(run, cpu)
    n = compile_backbone(compiled.student, "eager")  # dynamo graph capture without a code generator
    assert n == len(compiled.student.encoder_blocks()) + 1
    assert list(compiled.student.state_dict()) == keys
    got = compute_loss(compiled, batch, True, cpu, run.train)["seg"]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    got.backward()
    grads = {n: p.grad for n, p in eager.student.named_parameters() if p.grad is not None}
    assert any("adapter" in n for n in grads)
    for name, param in compiled.student.named_parameters():
        if name in grads:
            torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-6)
        else:
            assert param.grad is None, name


def test_device_shorthand_sets_train_device(tmp_path):
    assert load_config(sweep_args(tmp_path, "device=cpu")).train.device == "cpu"
    assert load_config(sweep_args(tmp_path, "device=cuda:1")).train.device == "cuda:1"


@pytest.mark.parametrize(
    "override, message",
    [
        ("device=gpu", "unknown train.device 'gpu'"),
        ("train.precision=fp16", "unknown train.precision 'fp16'"),
        ("train.compile=true train.compile_backend=nope", "unknown train.compile_backend 'nope'"),
    ],
)
def test_bad_execution_switch_stops_before_launch(tmp_path, override, message):
    cfg = load_config(sweep_args(tmp_path, *override.split()))
    with pytest.raises(ConfigError, match=message):
        launch(cfg)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_a_clear_error_before_launch(tmp_path):
    with pytest.raises(ConfigError, match="no CUDA device"):
        check_device("cuda")
    check_device("cuda", present=False)  # a Slurm submission checks on the compute node
    with pytest.raises(ConfigError, match="train.device=cuda but torch sees no CUDA device"):
        launch(load_config(sweep_args(tmp_path, "device=cuda")))
    slurm = load_config(sweep_args(tmp_path, "device=cuda", "launcher=slurm"))
    assert slurm.train.device == "cuda"


def test_the_bf16_hint_is_given_on_a_cpu_with_native_bf16_only(tmp_path, monkeypatch):
    from bench.config import TrainConfig
    from bench.hardware import accel

    with_bf16, without = tmp_path / "amx", tmp_path / "avx2"
    with_bf16.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    without.write_text("flags\t\t: fpu avx2\n")
    assert accel.cpu_has_bf16(str(with_bf16)) and not accel.cpu_has_bf16(str(without))
    assert not accel.cpu_has_bf16(str(tmp_path / "absent"))
    monkeypatch.setattr(accel, "cpu_has_bf16", lambda: True)
    assert "train.precision=bf16" in accel.bf16_hint([TrainConfig()])
    assert accel.bf16_hint([TrainConfig(precision="bf16")]) == ""  # already asked for
    monkeypatch.setattr(accel, "cpu_has_bf16", lambda: False)
    assert accel.bf16_hint([TrainConfig()]) == ""
