"""``convlora``: the public Conv-LoRA code.

autogluon ``examples/automm/Conv-LoRA/run_semantic_segmentation.py`` and AutoMM's ``semantic_segmentation``
preset: promptless decoding with one mask token, images resized to the square input (no padding) and flipped
at random, AdamW (wd 1e-4) with linear decay to 0, lr 1e-4 (3e-4 on roads and leaves), 30 epochs (camouflage
and roads 20, SBU 10, balanced BCE on SBU), the best epoch on the validation split with patience 10, metrics
on the square frame (:mod:`bench.eval.metrics_convlora`). Mixed precision is this suite's (bf16 autocast on a
GPU; the public code uses fp16 with a loss scaler). As the public code: gradients clipped at global norm 1
(AutoMM ``optim/default.yaml`` ``gradient_clip_val: 1``, algorithm ``norm``), biases and norm-layer parameters
without weight decay (AutoMM's parameter groups: ``train.weight_decay_groups=automm``), each batch of 4 as 4
accumulated micro-batches of 1 image (per-GPU batch 1, ``accumulate_grad_batches`` 4: the MoE load-balancing
loss is computed per image), and checkpoint selection on the validation split scored with the convlora
definitions and the family's first report metric (sm on polyps and camouflage, iou on leaves, roads and skin,
ber on SBU: the run script's validation metric).
"""

from __future__ import annotations

from bench.config.protocols import Protocol, register_protocol
from bench.eval.metrics_convlora import convlora_scores

CONVLORA = Protocol(
    name="convlora",
    summary="public Conv-LoRA code (promptless, square inputs, AdamW + linear decay, min-max metrics)",
    order=2,
    preset={
        "backbone.mask_tokens": 1,  # SAMForSemanticSegmentation(num_mask_tokens=1)
        "data.preprocess": "square",  # resize_to_square (bicubic) / resize_gt_to_square (nearest)
        "train.prompt": "none",
        "eval.prompt": "none",
        "train.hflip": True,  # train_transforms: random_horizontal_flip
        "train.optimizer": "adamw",
        "train.weight_decay": 1e-4,
        "train.schedule": "poly",  # polynomial_decay, power 1, end_lr 0, no warm-up
        "train.lr": 1e-4,
        "train.min_lr": 0.0,
        "train.grad_clip": 1.0,  # configs/optim/default.yaml: gradient_clip_val 1, gradient_clip_algorithm norm
        "train.weight_decay_groups": "automm",  # optim/utils.py get_weight_decay_param_names
        # per-GPU batch 1 x accumulate_grad_batches 4: batch-level terms (the MoE balancing loss) per image
        "train.grad_accumulation": 4,
        "train.structure_loss": "unweighted_bce",  # its structure_loss.py has the same reduce= quirk
        "eval.select": "val_best",  # top_k=3, top_k_average_method="best": the best epoch on val.csv
        "eval.select_epochs": 100,  # every epoch is a candidate
        "eval.patience": 10,
        "eval.resolution": "input",  # metrics on the 1024 square with the GT resized to it
        # run_semantic_segmentation.py trains once on the polyp pool and evaluates test_Kvasir.csv and
        # test_CVC-ClinicDB.csv with the same predictor: a sweep with both gets one training (kvasir's runs)
        "test_sets": {"kvasir": ["cvc_clinicdb"]},
    },
    dataset_values={  # run_semantic_segmentation.py get_default_training_setting
        "*": {"train.epochs": 30},
        "camouflage": {"train.epochs": 20},
        "road": {"train.epochs": 20, "train.lr": 3e-4},
        "leaf": {"train.lr": 3e-4},
        "shadow": {"train.epochs": 10, "train.structure_loss": "balanced_bce"},
    },
    method_defaults={
        "convlora": {"r": 3, "alpha": 32.0, "num_experts": 8},  # --rank 3, lora.alpha 32, --expert_num 8
        "lora": {"form": "fused", "r": 3, "alpha": 32.0},  # the same LoRA on the fused qkv
        # The other baselines are not in the public code; the paper gives only their parameter counts
        # (Table 1). Each is set to the published setting its count identifies on SAM ViT-H (counts in
        # tests/reports/test_params.py); where the count does not single out one setting, that is said.
        "vpt": {"num_tokens": 12},  # 12 x 1280 x 32 blocks = 0.49 M over the decoder: 4.00 M as published
        # 3.92 M: a 2-wide adapter on attention and MLP of all 32 blocks, public init, LayerNorms frozen
        # (1-wide with the LayerNorms trained counts the same: the count does not tell them apart)
        "adapter": {"zero_init": False, "ratio": 2 / 1280, "train_norms": False, "start_block": 0},
        # 3.98 M: task feature width 1280 // 16 = 80 (SAM-Adapter's own configs use 32: 3.69 M)
        "sam_adapter": {"zero_init": False, "scale_factor": 16},
        "ssf": {"init_std": 0.02},  # the SSF code's init: scale ~ N(1, 0.02), shift ~ N(0, 0.02)
        # lst keeps LST's reduction 8 (20.21 M vs the published 11.49 M): no integer reduction or stride
        # gives 11.49 M (reduction 13: 11.40 M; reduction 8 with every 2nd block: 11.98 M)
    },
    metrics="convlora",
    score=convlora_scores,
    val_metrics="convlora",  # the run script's validation metric under its own definitions
    # multi-class (Trans10K-v2): SAMForSemanticSegmentation with num_mask_tokens queries + a class head and the
    # Mask2Former loss; 10 tokens as AutoMM's multi-class test (the paper does not say: [I])
    semantic_head="queries",
    semantic_queries=10,
    report_metrics={  # run_semantic_segmentation.py: predictor.evaluate(test_df, metrics=...)
        "polyp": ("sm", "em_mean", "wfm", "mae"),
        "camouflage": ("sm", "em_mean", "wfm", "mae"),
        "skin": ("iou",),
        "leaf": ("iou",),
        "road": ("iou",),
        "shadow": ("ber",),
    },
)

register_protocol(CONVLORA)
