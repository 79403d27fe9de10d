"""tools.gpu_check: the device peak table and the FLOP count of a training step (the timings are not tested)."""

from __future__ import annotations

import pytest
import torch

import tools.gpu_check as gpu_check
from bench.runs.runner import build_parts
from bench.runs.sweep import run_configs
from tests.tiny_runs import sweep
from tools.perf import first_batch, prompted_train_set


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L40", 181.0),
        ("Some Future GPU", None),
    ],
)
def test_peak_is_looked_up_by_the_most_specific_name(monkeypatch, name, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: name)
    assert gpu_check.peak_tflops(torch.device("cuda")) == peak
    assert gpu_check.peak_tflops(torch.device("cpu")) is None


def test_step_flops_count_forward_and_backward(tmp_path):
    (run,) = run_configs(sweep(tmp_path, "train.batch_size=2"))
    device = torch.device("cpu")
    parts = build_parts(run, device)
    batch = first_batch(prompted_train_set(run, parts), 2)
    images = batch["image"]
    with torch.no_grad(), torch.utils.flop_counter.FlopCounterMode(display=False) as forward:
        parts.student.encode(images)
    step = gpu_check.step_flops(run, batch, device)
    # a training step = encoder forward + its backward (about 2x for the trainable blocks) + decoder: more than
    # the frozen encoder forward alone, and finite
    assert forward.get_total_flops() < step < 10 * forward.get_total_flops()
