"""``run_benchmark.py params backbone=NAME``: trainable parameters of every registered PEFT method.

Like the Conv-LoRA paper's table: trainable parameters in millions and their ratio to the
pretrained backbone's parameter count, with and without the mask decoder (which most methods train
too). Written as CSV and LaTeX under ``<runs_dir>/_reports/``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import pandas as pd
import torch

from bench.backbones import build_backbone
from bench.config import BenchConfig
from methods.peft._base import PEFT_METHODS, build_peft

log = logging.getLogger(__name__)


def count(module: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def params_table(cfg: BenchConfig) -> pd.DataFrame:
    """One row per PEFT method: trainable parameters (M) and ratio (%) to the pretrained model."""
    torch.manual_seed(0)
    # parameter counts do not depend on the weights: a full-size backbone without a checkpoint is counted
    # on random weights (the one use of random_init the params command implies)
    base = build_backbone(dataclasses.replace(cfg.backbone, checkpoint=None, random_init=True))
    total = count(base)
    rows = []
    for name in PEFT_METHODS.names():
        model = copy.deepcopy(base)
        build_peft(name, dict(cfg.peft) if name in cfg.methods else {}).apply(model)
        trainable = count(model, trainable=True)
        decoder = count(model.mask_decoder, trainable=True)
        rows.append(
            {
                "method": name,
                "params_M": trainable / 1e6,
                "ratio_pct": 100 * trainable / total,
                "params_wo_decoder_M": (trainable - decoder) / 1e6,
                "ratio_wo_decoder_pct": 100 * (trainable - decoder) / total,
            }
        )
        del model
    frame = pd.DataFrame(rows).set_index("method")
    frame.attrs["total_M"] = total / 1e6
    return frame


def write_params(cfg: BenchConfig, out_dir: str | Path | None = None) -> str:
    frame = params_table(cfg)
    out = Path(out_dir or Path(cfg.runs_dir) / "_reports")
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"params_{cfg.backbone.name}"
    frame.to_csv(f"{stem}.csv", float_format="%.4f")
    header = ["Params (M)", "Ratio (%)", "Params w/o dec. (M)", "Ratio w/o dec. (%)"]
    shown = frame.rename(columns=dict(zip(frame.columns, header))).rename_axis(None)
    name = cfg.backbone.name.replace("_", "\\_")
    latex = (
        shown.style.format("{:.3f}")
        .format_index(escape="latex", axis=0)
        .format_index(escape="latex", axis=1)
        .to_latex(
            hrules=True,
            column_format="l" + "r" * len(header),
            caption=f"Trainable parameters on {name} ({frame.attrs['total_M']:.1f}M parameters).",
        )
    )
    Path(f"{stem}.tex").write_text(latex)
    text = shown.to_string(float_format=lambda v: f"{v:.3f}")
    return f"{cfg.backbone.name}: {frame.attrs['total_M']:.2f}M parameters\n{text}\nwritten to {stem}.csv and .tex"
