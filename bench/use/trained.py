"""Rebuild the fine-tuned student of a finished run from its directory (for ``predict`` and ``export``).

The student is built as the runner builds it (:func:`bench.runs.runner.build_student`: same seed before the
backbone and the PEFT modules, so frozen random parts come out the same; the protocol's method defaults and
preprocessing; a multi-class run's decoder shape and head from its record), then the trainable tensors of the
last epoch's ``checkpoint.pt`` are loaded into it. Teacher and distiller are training-time only and not rebuilt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from bench.backbones import Backbone
from bench.config import ConfigError, RunConfig, run_from_dict
from bench.contracts.methods import method_options
from bench.runs.results import METRICS_FILE
from bench.runs.runner import build_student
from bench.tasks import Task
from bench.tasks.base import task_from_record


@dataclass
class TrainedModel:
    run: RunConfig
    model: Backbone
    peft: Any  # the applied methods.peft PeftMethod
    peft_name: str
    run_dir: Path
    task: Optional[Task] = None  # a semantic / instances run's task (its head is ``model.task_head``)
    record: Optional[dict[str, Any]] = None  # the run's metrics.json


def load_trained(run_dir: str | Path, checkpoints_dir: str | None = None) -> TrainedModel:
    """The finished run's student with its trained weights; ConfigError naming what is missing."""
    run_dir = Path(run_dir)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"run={run_dir}: no config.yaml there (give a directory under runs/)")
    if not (run_dir / METRICS_FILE).is_file():
        raise ConfigError(f"run={run_dir}: the run is not complete (no {METRICS_FILE})")
    run = run_from_dict(yaml.safe_load(config.read_text()))
    if checkpoints_dir:
        run.backbone.checkpoints_dir = checkpoints_dir
    record = json.loads((run_dir / METRICS_FILE).read_text())
    task = task_from_record(record, run)
    spec, _, _ = method_options(run.method, run.peft, run.distill, run.protocol)
    model, peft, _ = build_student(run, task)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    ckpt = run_dir / "checkpoint.pt"
    if trainable:
        if not ckpt.is_file():
            raise ConfigError(f"run={run_dir}: {ckpt.name} is missing, the trained weights are lost")
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["parts"]["student"]
        if set(state) != set(trainable):
            diff = sorted(set(state) ^ set(trainable))[:5]
            raise ConfigError(f"run={run_dir}: {ckpt.name} does not fit method {run.method!r} (keys {diff})")
        with torch.no_grad():
            for name, value in state.items():
                trainable[name].copy_(value)
    model.requires_grad_(False)
    model.eval()
    return TrainedModel(run, model, peft, spec.peft, run_dir, task, record)
