"""One command that measures a GPU: ``python -m tools.gpu_check [--json PATH] [key=value ...]``.

In one process it prints, on ``train.device`` (auto = the first GPU):

1. the ``adapter+infosam`` / ``adapter`` step ratio with and without the teacher cache;
2. the InfoSAM loss at α = 2 (Frobenius norms) against the eigvalsh path (α = 1.01) at the paper's batch (4);
3. peak memory and step time per method family (PEFT, PEFT + batch-level distiller, decoder only), with and
   without ``train.grad_checkpoint``;
4. achieved TFLOP/s and MFU of the adapter step (FLOPs counted by ``torch.utils.flop_counter``, the peak from
   :data:`bench.hardware.flops.PEAK_TFLOPS` by device name);
5. on a GPU, the demo sweep on ``device=cuda`` (its wall time).

Sizes: SAM ViT-B at 1024 px, batch 4 on a GPU; the tiny ViT SAM of the tests on the CPU. The weights are random
(``backbone.random_init=true``, stated in the output): timings do not depend on the weights. ``--json`` writes
the same numbers, so two machines can be compared. On an H100 / H200 / A100 the adapter step's MFU is also filed
in the MFU store (:func:`bench.hardware.flops.mfu_file`: ``$SAMFIT_MFU_FILE``, else
``~/.cache/samfit-bench/mfu.json``), where ``python run_benchmark.py plan gpu=...`` reads it. On the CPU the
peak memory is the process's peak RSS, which only grows: per-family values there are upper bounds, not separable.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.config import RunConfig
from bench.hardware.accel import pick_device
from bench.hardware.flops import gpu_key, peak_for_name, store_mfu
from bench.hardware.memory import peak_memory_mb, reset_peak
from bench.logs import setup_logging
from bench.runs.runner import build_parts
from bench.runs.sweep import load_config, run_configs
from tools.perf import first_batch, loss_time, prompted_train_set, step_times, training_step

log = logging.getLogger("samfit.gpu_check")

FAMILIES = {"peft": "adapter", "peft+batch distiller": "adapter+infosam", "decoder only": "decoder_only"}


def peak_tflops(device: torch.device) -> Optional[float]:
    """The device's dense bf16 peak (:data:`bench.hardware.flops.PEAK_TFLOPS` by its name), None on the CPU."""
    if device.type != "cuda":
        return None
    return peak_for_name(torch.cuda.get_device_name(device))


def store_result(result: dict[str, Any]) -> Optional[Path]:
    """File the adapter step's MFU under its GPU kind (:func:`bench.hardware.flops.store_mfu`), for ``plan``;
    None when there is nothing to file (the CPU, or a GPU ``plan gpu=`` does not know)."""
    key = gpu_key(result["device"]) if result["device"] != "cpu" else None
    mfu = result["adapter_step"]["mfu"]
    if key is None or mfu is None:
        return None
    details = {k: result[k] for k in ("backbone", "img_size", "batch_size", "precision", "torch")}
    return store_mfu(key, float(mfu), result["device"], details)


def sizes(device: torch.device) -> list[str]:
    """The default overrides: SAM ViT-B at 1024 px, batch 4 on a GPU; on the CPU the tiny ViT SAM of the tests
    (SAM's ViT at 64 px; ViT-B only takes 1024 px). Random weights, explicitly."""
    name, size = ("sam_vit_b", 1024) if device.type == "cuda" else ("tiny_sam", 64)
    return [f"backbone.name={name}", f"backbone.img_size={size}", "backbone.random_init=true", "train.batch_size=4"]


def step_flops(run: RunConfig, batch: dict[str, Any], device: torch.device) -> float:
    """FLOPs of one training step (forward + backward + optimizer) counted by ``FlopCounterMode``."""
    step = training_step(build_parts(run, device), run, batch, device)
    step()  # warm-up outside the counter (cache fill)
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def memory_and_time(
    runs: dict[str, RunConfig], batch: dict[str, Any], device: torch.device, repeat: int
) -> dict[str, dict[str, float]]:
    """Step time and peak memory of each variant. The times come from one set of interleaved rounds
    (:func:`tools.perf.step_times`), so the load of the machine hits every variant alike; the peaks from one
    short pass per variant after a reset (on the CPU the peak RSS only grows: an upper bound)."""
    seconds = step_times(runs, batch, repeat, device)
    out = {}
    for key, run in runs.items():
        reset_peak(device)
        step_times({key: run}, batch, 1, device)
        out[key] = {"step_ms": round(seconds[key] * 1000, 1), "peak_memory_mb": round(peak_memory_mb(device)[0], 1)}
    return out


def demo_seconds(device: torch.device) -> Optional[float]:
    """Wall time of the demo sweep on ``device=cuda`` (GPU only), in a scratch runs directory."""
    if device.type != "cuda":
        return None
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.time()
        cmd = [sys.executable, "run_benchmark.py", "run", "sweep=demo", "device=cuda", f"runs_dir={runs}"]
        subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parent.parent)
        return round(time.time() - t0, 1)


def measure(overrides: list[str], repeat: int) -> dict[str, Any]:
    probe = load_config(["sweep=demo", "datasets=[synth_polyp]", "seeds=[0]", *overrides])
    device = pick_device(run_configs(probe)[0].train.device)
    cfg = load_config(
        ["sweep=demo", "datasets=[synth_polyp]", "seeds=[0]", "methods=[adapter]", *sizes(device), *overrides]
    )
    base = run_configs(cfg)[0]
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "backbone": base.backbone.name,
        "img_size": base.backbone.img_size,
        "random_init": base.backbone.random_init,
        "batch_size": base.train.batch_size,
        "precision": base.train.precision,
        "repeat": repeat,
    }
    with tempfile.TemporaryDirectory() as cache:
        base.data.cache_dir = cache
        parts = build_parts(base, device)
        batch = first_batch(prompted_train_set(base, parts), base.train.batch_size)
        del parts

        def variant(method: str, **train: Any) -> RunConfig:
            run = copy.deepcopy(base)
            run.method = method
            for key, value in train.items():
                if key == "encoder_cache":
                    run.data.encoder_cache = value
                else:
                    setattr(run.train, key, value)
            return run

        ratios = {}
        for cached in (True, False):
            runs = {m: variant(m, encoder_cache=cached) for m in ("adapter", "adapter+infosam")}
            t = step_times(runs, batch, repeat, device)
            ratios["cache_on" if cached else "cache_off"] = round(t["adapter+infosam"] / t["adapter"], 3)
        out["infosam_over_adapter_step"] = ratios
        a2, a101 = loss_time(2.0, 4, 20, device), loss_time(1.01, 4, 20, device)
        out["infosam_loss_ms"] = {"alpha_2": round(a2 * 1000, 3), "eigvalsh_alpha_1.01": round(a101 * 1000, 3)}
        # decoder only has no trainable encoder block: checkpointing changes nothing there (a control)
        out["families"] = {
            family: memory_and_time(
                {
                    ("checkpointing" if ckpt else "plain"): variant(method, grad_checkpoint=ckpt)
                    for ckpt in (False, True)
                },
                batch,
                device,
                repeat,
            )
            for family, method in FAMILIES.items()
        }
        out["peak_memory_kind"] = peak_memory_mb(device)[1]
        adapter = variant("adapter")
        flops = step_flops(adapter, batch, device)
        seconds = out["families"]["peft"]["plain"]["step_ms"] / 1000
        peak = peak_tflops(device)
        out["adapter_step"] = {
            "gflop": round(flops / 1e9, 3),
            "tflop_per_s": round(flops / seconds / 1e12, 5),
            "device_peak_tflop_per_s": peak,
            "mfu": round(flops / seconds / 1e12 / peak, 4) if peak else None,
        }
    out["demo_seconds_cuda"] = demo_seconds(device)
    return out


def render(r: dict[str, Any]) -> str:
    ratio = r["infosam_over_adapter_step"]
    lines = [
        f"device {r['device']} (torch {r['torch']}, {r['threads']} threads), {r['backbone']} @ {r['img_size']} px, "
        f"batch {r['batch_size']}, precision {r['precision']}, random weights: {r['random_init']}, "
        f"median of {r['repeat']}",
        f"InfoSAM step / adapter step: cache on {ratio['cache_on']:.3f}, cache off {ratio['cache_off']:.3f}",
        f"InfoSAM loss at batch 4: alpha=2 {r['infosam_loss_ms']['alpha_2']:.2f} ms, "
        f"eigvalsh (alpha=1.01) {r['infosam_loss_ms']['eigvalsh_alpha_1.01']:.2f} ms",
        f"per method family (peak memory: {r['peak_memory_kind']}):",
    ]
    for family, by in r["families"].items():
        cells = ", ".join(f"{k} {v['step_ms']:.1f} ms / {v['peak_memory_mb']:.0f} MiB" for k, v in by.items())
        lines.append(f"  {family:<22} {cells}")
    a = r["adapter_step"]
    mfu = f"{a['mfu'] * 100:.1f} % of {a['device_peak_tflop_per_s']:.0f}" if a["mfu"] is not None else "n/a (no peak)"
    lines.append(f"adapter step: {a['gflop']:.3f} GFLOP, {a['tflop_per_s']:.5f} TFLOP/s, MFU {mfu}")
    demo = r["demo_seconds_cuda"]
    lines.append(f"demo on device=cuda: {demo:.0f} s" if demo is not None else "demo on device=cuda: skipped (no GPU)")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    setup_logging(logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    parser.add_argument("--repeat", type=int, default=5, help="timed steps per measurement (median)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. backbone.img_size=256)")
    args = parser.parse_args(argv)
    result = measure(args.overrides, args.repeat)
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True))
    stored = store_result(result)
    if stored is not None:
        print(f"MFU {result['adapter_step']['mfu']:.3f} stored in {stored} (python run_benchmark.py plan uses it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
