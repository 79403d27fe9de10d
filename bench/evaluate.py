"""Evaluation on the test split at the original image resolution."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench.accel import autocast_for, images_to
from bench.backbones import Backbone
from bench.data import PromptedDataset, batch_prompts, collate
from bench.encoders import CachedEncoder
from bench.metrics import MetricAccumulator

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(
    backbone: Backbone,
    encoder: CachedEncoder,
    data: PromptedDataset,
    use_box: bool,
    device: torch.device,
    batch_size: int = 4,
    desc: str = "eval",
    precision: str = "auto",
    channels_last: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Score every test image; the logits are resized back to each image's own size.

    The model runs batch after batch while one background thread scores the previous batches
    (``py_sod_metrics`` is numpy on the CPU): on a GPU the metrics leave the model's critical path.
    Images are scored in order, so the rows and means do not depend on timing.

    Returns:
        Per-image rows (``name`` + every metric) and the dataset-level means.
    """
    backbone.eval()
    acc = MetricAccumulator()
    loader = DataLoader(
        data, batch_size=batch_size, shuffle=False, collate_fn=collate, pin_memory=device.type == "cuda"
    )
    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics") as scorer:
        for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
            images = images_to(batch["image"], device, channels_last)
            with autocast_for(device, precision):
                z, blocks = encoder(images)
                out = backbone.decode(z, batch_prompts(batch, use_box).to(device), blocks)
            for i, gt in enumerate(batch["gt"]):
                logits = backbone.postprocess(out.logits[i : i + 1].float(), tuple(gt.shape))
                prob = torch.sigmoid(logits)[0, 0].cpu().numpy().astype("float64")
                pending.append(scorer.submit(acc.add, batch["name"][i], prob, gt))
        for future in pending:
            future.result()  # re-raises a metric error (e.g. a non-binary mask) here
    return acc.rows, acc.mean()
