"""``run_benchmark.py params backbone=NAME``: trainable parameters of every registered PEFT method.

A parameter counts if it is *trained*: marked ``requires_grad`` after :meth:`PeftMethod.apply`,
which leaves frozen what the method's forward never reaches (the hypernetwork MLPs of the unused
mask tokens, the IoU head that no loss reads; ``bench.contracts.peft.unused_decoder_modules``), so the
count is what the optimizer updates. As in the Conv-LoRA paper's table: millions and the ratio to
the pretrained backbone's parameter count, with and without the mask decoder.

Published counts are shown beside ours where a paper gives them for the backbone
(:data:`SETTINGS`): on ``sam_vit_h`` the Conv-LoRA table (Zhong et al., ICLR 2024; ratios against
SAM ViT-H's 641.09 M), each method built with the options of that setting. The InfoSAM paper
(ViT-B) has no parameter column: on ``sam_vit_b`` the InfoSAM code's options are used and only our
counts are shown. ``peft.*`` overrides given with ``methods=[...]`` still apply to those methods.
Models are built on the meta device (no weights are allocated; counting needs only shapes).
Written as CSV and LaTeX under ``<runs_dir>/_reports/``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import torch

from bench.backbones import build_backbone
from bench.config import BenchConfig
from bench.config.protocols import method_defaults
from bench.contracts.peft import PEFT_METHODS, build_peft
from bench.fileio import atomic_write

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParamSetting:
    """A paper's published parameter counts (M); the per-method options come from its protocol
    (``Protocol.method_defaults`` in ``protocols/``)."""

    source: str
    published_M: dict[str, float] = field(default_factory=dict)
    total_M: Optional[float] = None


CONVLORA_TABLE = ParamSetting(
    source="Conv-LoRA (Zhong et al., ICLR 2024), Table 1, SAM ViT-H",
    # protocol convlora: convlora r = 3, alpha = 32, 8 experts (run script / presets); lora fused r = 3 (read off
    # the count: 32 · 3 · (1280 + 3840) = 0.49 M over the decoder)
    published_M={
        "decoder_only": 3.51,
        "bitfit": 3.96,
        "adapter": 3.92,
        "vpt": 4.00,
        "lst": 11.49,
        "sam_adapter": 3.98,
        "ssf": 4.42,
        "lora": 4.00,
        "convlora": 4.02,
        # "SAM trained from scratch": the whole model (= total_M); ours, 640.53 M, leaves out the 0.557 M no
        # forward reaches (methods/peft/scratch.py), as the table's decoder-only 3.51 M does in the decoder
        "scratch": 641.09,
    },
    total_M=641.09,
)

INFOSAM_SETTING = ParamSetting(
    source="InfoSAM code (MuyaoYuan/InfoSAM), SAM ViT-B; the paper publishes no parameter counts",
)

SETTINGS: dict[str, ParamSetting] = {"convlora": CONVLORA_TABLE, "infosam": INFOSAM_SETTING}  # by protocol


def count(module: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def _options(name: str, cfg: BenchConfig) -> dict[str, Any]:
    """The method's options under the config's protocol (its defaults), with ``peft.*`` for ``methods``."""
    values = dict(cfg.peft) if name in cfg.methods else {}
    fields = {f.name for f in dataclasses.fields(PEFT_METHODS.get(name).Options)}
    return method_defaults(cfg.protocol, name, values, fields)


def params_table(cfg: BenchConfig, setting: Optional[ParamSetting] = None) -> pd.DataFrame:
    """One row per PEFT method: trained parameters (M), ratio (%) to the pretrained model and, where
    the setting publishes them, the paper's count and ours as a percentage of it.

    Args:
        cfg: Resolved config (``backbone``, and ``peft`` for the methods in ``methods``).
        setting: Published counts; default ``SETTINGS.get(cfg.protocol)`` (the options always come from
            ``cfg.protocol``: ``protocol=convlora`` counts Conv-LoRA's setting, ``protocol=infosam`` InfoSAM's).
    """
    setting = setting if setting is not None else SETTINGS.get(cfg.protocol)
    # parameter counts do not depend on the weights: a full-size backbone without a checkpoint is counted
    # on random weights (the one use of random_init the params command implies)
    with torch.device("meta"):
        base = build_backbone(dataclasses.replace(cfg.backbone, checkpoint=None, random_init=True))
    total = count(base)
    rows = []
    for name in PEFT_METHODS.names():
        model = copy.deepcopy(base)
        build_peft(name, _options(name, cfg)).apply(model)
        trainable = count(model, trainable=True)
        decoder = count(model.mask_decoder, trainable=True)
        row = {
            "method": name,
            "params_M": trainable / 1e6,
            "ratio_pct": 100 * trainable / total,
            "params_wo_decoder_M": (trainable - decoder) / 1e6,
            "ratio_wo_decoder_pct": 100 * (trainable - decoder) / total,
        }
        if setting is not None and setting.published_M:
            paper = setting.published_M.get(name, math.nan)
            row["paper_M"] = paper
            row["paper_ratio_pct"] = 100 * paper / setting.total_M if setting.total_M else math.nan
            row["ours_of_paper_pct"] = 100 * row["params_M"] / paper
        rows.append(row)
        del model
    frame = pd.DataFrame(rows).set_index("method")
    frame.attrs["total_M"] = total / 1e6
    frame.attrs["source"] = setting.source if setting else ""
    return frame


HEADERS = {
    "params_M": "Params (M)",
    "ratio_pct": "Ratio (%)",
    "params_wo_decoder_M": "Params w/o dec. (M)",
    "ratio_wo_decoder_pct": "Ratio w/o dec. (%)",
    "paper_M": "Paper (M)",
    "paper_ratio_pct": "Paper ratio (%)",
    "ours_of_paper_pct": "Ours / paper (%)",
}


def write_params(cfg: BenchConfig, out_dir: str | Path | None = None) -> str:
    frame = params_table(cfg)
    out = Path(out_dir or Path(cfg.runs_dir) / "_reports")
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"params_{cfg.backbone.name}"
    atomic_write(Path(f"{stem}.csv"), frame.to_csv(float_format="%.4f").encode())
    shown = frame.rename(columns=HEADERS).rename_axis(None)
    name = cfg.backbone.name.replace("_", "\\_")
    latex = (
        shown.style.format("{:.3f}", na_rep="--")
        .format_index(escape="latex", axis=0)
        .format_index(escape="latex", axis=1)
        .to_latex(
            hrules=True,
            column_format="l" + "r" * len(shown.columns),
            caption=f"Trained parameters on {name} ({frame.attrs['total_M']:.1f}M parameters).",
        )
    )
    atomic_write(Path(f"{stem}.tex"), latex.encode())
    text = shown.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-")
    published = f"; published counts: {frame.attrs['source']}" if frame.attrs["source"] else ""
    source = f"options of protocol {cfg.protocol}{published}\n"
    return (
        f"{cfg.backbone.name}: {frame.attrs['total_M']:.2f}M parameters\n{source}{text}\nwritten to {stem}.csv and .tex"
    )
