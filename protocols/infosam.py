"""``infosam``: what the public InfoSAM code computes, quirks included.

MuyaoYuan/InfoSAM ``c35d7f9`` (``train_attention.py``, ``val.py``, ``util/metrics.py``, ``util/utils.py``,
``datasets/dataset_csv.py``): BGR input, pad-then-normalise, bilinear mask resize, integer box translation at
training *and* test time, the plain-mean BCE of its ``StructureLoss``, ``T_max = epochs·(N//B + 1)``, fp32
everywhere (cache included), default-init adapters, fused LoRA, metrics on the raw logits
(:mod:`bench.eval.metrics_infosam`), and the last 5 epochs evaluated on the *test* set (its shell scripts);
tables report the last epoch, and "best of last 5 (test)" where asked, labelled. It reads no validation
split, so none is held back (``data.hold_out_val=false``): every training image trains, as in the public code.
"""

from __future__ import annotations

from bench.config.protocols import Protocol, register_protocol
from bench.eval.metrics_infosam import infosam_scores

INFOSAM = Protocol(
    name="infosam",
    summary="public InfoSAM code (raw-logit metrics, BGR, jittered test boxes)",
    order=1,
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
    # it never reads a validation split, so none is held back: every training image trains (a synthetic domain's
    # own validation split, DatasetInfo.own_val, takes no training images and keeps its run names)
    dataset_values={"*": {"data.hold_out_val": False}},
    method_defaults={
        "adapter": {"zero_init": False},  # common.Adapter keeps PyTorch's default init
        "susam": {"zero_init": False},  # the same Adapter class
        "lora": {"form": "fused", "r": 4, "alpha": 4.0},  # LoRA_layers.LoRALinear on the fused qkv
        "convlora": {"r": 4, "alpha": 4.0, "num_experts": 8},  # ConvLoRALinear, --moe_lambda 1
    },
    metrics="infosam",
    score=infosam_scores,
    paper_tables=True,
)

register_protocol(INFOSAM)
