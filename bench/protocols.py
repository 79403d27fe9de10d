"""Named protocols: one word (``protocol=NAME``) selects a whole training recipe and evaluation.

A protocol is a layer of config defaults applied between the schema and the sweep file (so a sweep
or the command line can still override a single key, visibly, in the run's ``config.yaml``), plus
per-method option defaults, the metric definition its tables report, and its checkpoint-selection
rule. ``protocol`` itself is a run key, so it is part of every run's hash.

* ``clean`` — the suite's own definitions (the default, for the demo and for new work): RGB input,
  SAM's normalise-then-pad, exact test boxes, pixel-weighted structure loss, cosine schedule that
  reaches ``min_lr`` on the last step, bf16 autocast on a GPU, fp16 encoder cache, identity-at-init
  adapters, metrics on sigmoid probabilities (``py_sod_metrics``, min-max rescaled, Fβw with β = 1,
  IoU/Dice at 0.5), the checkpoint chosen on the validation split among the last epochs.
* ``infosam`` — what the public InfoSAM code (MuyaoYuan/InfoSAM ``c35d7f9``: ``train_attention.py``,
  ``val.py``, ``util/metrics.py``, ``util/utils.py``, ``datasets/dataset_csv.py``) computes, quirks
  included: BGR input, pad-then-normalise, bilinear mask resize, integer box translation at training
  *and* test time, the plain-mean BCE of its ``StructureLoss``, ``T_max = epochs·(N//B + 1)``, fp32
  everywhere (cache included), default-init adapters, fused LoRA, metrics on the raw logits
  (:mod:`bench.metrics_infosam`), and the last 5 epochs evaluated on the *test* set (its shell
  scripts); tables report the last epoch, and "best of last 5 (test)" where asked, labelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.config import ConfigError


@dataclass(frozen=True)
class Protocol:
    """One named recipe + evaluation.

    Attributes:
        name: The value of ``protocol=``.
        summary: One line for ``list``, report titles and LaTeX captions.
        preset: Dotted config keys → values, applied under the sweep file and the command line.
        method_defaults: PEFT method name → option defaults (``peft.*``) applied where the run sets none.
        dataset_values: Dataset family (``"*"`` = every family) → dotted config values, applied to that
            dataset's runs unless the sweep file or the command line set the key.
        metrics: The metric definition its tables report (a key of :data:`bench.evaluate.DEFINITIONS`).
        paper_tables: Whether the published InfoSAM values are comparable with its runs ("paper / Δ").
    """

    name: str
    summary: str
    preset: dict[str, Any] = field(default_factory=dict)
    method_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: str = "clean"
    paper_tables: bool = False


CLEAN = Protocol(
    name="clean",
    summary="clean definitions (sigmoid probabilities, RGB, exact test boxes)",
    preset={"eval.select": "val_best"},
    metrics="clean",
)

INFOSAM = Protocol(
    name="infosam",
    summary="public InfoSAM code (raw-logit metrics, BGR, jittered test boxes)",
    preset={
        "data.preprocess": "infosam",
        "data.cache_dtype": "fp32",
        "train.precision": "fp32",
        "train.structure_loss": "unweighted_bce",
        "train.cosine_horizon": "infosam",
        "train.box_jitter_form": "translate",
        "train.box_jitter": 5.0,
        "eval.box_jitter_form": "translate",
        "eval.box_jitter": 5.0,
        "eval.select": "test_last",
    },
    method_defaults={
        "adapter": {"zero_init": False},  # common.Adapter keeps PyTorch's default init
        "lora": {"form": "fused"},  # LoRA_layers.LoRALinear on the fused qkv, r = 4, alpha = 4
    },
    metrics="infosam",
    paper_tables=True,
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (CLEAN, INFOSAM)}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; valid: {', '.join(PROTOCOLS)}") from None


def method_defaults(protocol: str, peft_name: str, values: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """``values`` with the protocol's defaults for ``peft_name`` filled in where the run set none."""
    defaults = get_protocol(protocol).method_defaults.get(peft_name, {})
    return {**{k: v for k, v in defaults.items() if k in fields}, **values}
