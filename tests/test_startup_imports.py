"""What a sweep's processes import before they do any work: the controller resolves the sweep and every job
process finds its plugins (all registries discovered), and neither may load the libraries only some runs need
(imported where they are used). Each costs seconds of the demo's budget on 2 cores: ``torchmetrics`` ~3 s (it
imports its text and image packages, transformers and torchvision with them), ``transformers``' Mask2Former
~3 s, ``py_sod_metrics`` ~1.4 s (sklearn)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAZY = ("torchmetrics", "transformers", "py_sod_metrics", "sklearn", "onnx", "onnxruntime", "tensorboard")

START_UP = """
import gc, json, sys
from bench.runs.sweep import load_config, resolve_sweep
from bench.registry import Registry
import bench.runs.launcher, bench.runs.runner  # what a job process unpickles before its first run
sweep = resolve_sweep(load_config([]))
for obj in gc.get_objects():
    if isinstance(obj, Registry):
        obj.discover()
print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))
"""


def test_sweep_and_job_start_up_leave_the_heavy_libraries_unloaded() -> None:
    out = subprocess.run(
        [sys.executable, "-c", START_UP], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "torch" in loaded and "segment_anything" in loaded  # the probe did import the suite
    assert not loaded & set(LAZY), f"imported at start-up: {sorted(loaded & set(LAZY))}"
