"""Evaluation at the original image resolution, scored under every metric definition at once.

The model's logits are computed once per image; each *definition* scores them its own way:

* ``clean`` (:mod:`bench.eval.metrics`): on ``sigmoid(logits)``, the suite's conventions, the base
  definition (:data:`BASE_DEFINITION`) every run is scored under;
* one more per protocol that defines its own (``Protocol.score``, in protocol order): ``infosam``
  (:mod:`bench.eval.metrics_infosam`: on the raw logits, as the public InfoSAM ``val.py``) and ``convlora``
  (:mod:`bench.eval.metrics_convlora`: sigmoid, min-max, mean E-curve, as autogluon's
  ``semantic_seg_metrics.py``).

So every run carries all of them, and a report can show the paper-protocol number beside the clean one from
the same runs. ``per_image.csv`` holds the clean keys unprefixed and the others as ``<definition>.<key>``.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, Optional

import numpy as np
import torch
from scipy.special import expit
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench.backbones import Backbone
from bench.config.protocols import protocols_in_order
from bench.data.batches import PromptedDataset, batch_prompts, collate
from bench.data.encoders import CachedEncoder
from bench.eval.metrics import BASE_DEFINITION, MetricAccumulator, score_one
from bench.hardware.accel import autocast_for, images_to
from bench.phases import CLOCK, OVERLAPPING

log = logging.getLogger(__name__)


class DefinitionAccumulator:
    """Per-image scores of one definition (``score(logits, gt) -> {key: value}``); dataset value = mean."""

    def __init__(self, score: Callable[[np.ndarray, np.ndarray], dict[str, float]]) -> None:
        self.score = score
        self.rows: list[dict[str, Any]] = []

    def add(self, name: str, logits: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        scores = self.score(logits, gt)
        self.rows.append({"name": name, **scores})
        return scores

    def mean(self) -> dict[str, float]:
        if not self.rows:
            raise ValueError("no images were scored")
        return {k: float(np.mean([r[k] for r in self.rows])) for k in self.rows[0] if k != "name"}


class CleanAccumulator(MetricAccumulator):
    """:class:`bench.eval.metrics.MetricAccumulator` fed with logits (it scores their sigmoid)."""

    def add(self, name: str, logits: np.ndarray, gt: np.ndarray) -> dict[str, float]:  # type: ignore[override]
        return super().add(name, expit(logits), gt)


def merge_rows(accs: dict[str, Any], base: str = BASE_DEFINITION) -> list[dict[str, Any]]:
    """Per-image rows of accumulators scored on the same images in the same order (each with ``.rows``): the
    ``base`` definition's keys unprefixed, every other definition's as ``<definition>.<key>``."""
    merged = [dict(row) for row in accs[base].rows]
    for definition, acc in accs.items():
        if definition == base:
            continue
        for out, row in zip(merged, acc.rows):
            out.update({f"{definition}.{k}": v for k, v in row.items() if k != "name"})
    return merged


def definitions() -> dict[str, Callable[[], Any]]:
    """Definition name → a fresh accumulator: the base one, then every protocol's own, in protocol order
    (the column order of ``per_image.csv``)."""
    own = {p.metrics: p.score for p in protocols_in_order() if p.score is not None}
    return {BASE_DEFINITION: CleanAccumulator, **{n: partial(DefinitionAccumulator, f) for n, f in own.items()}}


class OneMetric:
    """The one metric a candidate epoch is chosen by (``metric`` under ``definition``, or under the clean ones
    where that definition does not define it, as :meth:`bench.eval.selection.EpochSelector.score` reads it):
    the value :class:`Scorer` would give, without the other metrics and definitions."""

    def __init__(self, definition: str, metric: str) -> None:
        self.definition, self.metric = definition, metric
        own = {p.metrics: p.score for p in protocols_in_order() if p.score is not None}
        self.score = own.get(definition) if definition != BASE_DEFINITION else None
        self.values: dict[str, list[float]] = {}
        self.names: list[str] = []

    def add(self, name: str, logits: np.ndarray, gt: np.ndarray) -> None:
        start = time.perf_counter()
        where, value = BASE_DEFINITION, None
        if self.score is not None:
            scores = self.score(logits, gt)
            if self.metric in scores:
                where, value = self.definition, float(scores[self.metric])
        if value is None:
            value = score_one(self.metric, expit(logits), gt)
        self.values.setdefault(where, []).append(value)
        self.names.append(name)
        CLOCK.add(f"{OVERLAPPING}.{where} (one metric)", time.perf_counter() - start)

    def rows(self) -> list[dict[str, Any]]:
        """Per-image rows as :meth:`Scorer.rows` names the keys (what DDP gathers), this metric only."""
        ((where, values),) = self.values.items() if self.values else (((BASE_DEFINITION, []),))
        key = self.metric if where == BASE_DEFINITION else f"{where}.{self.metric}"
        return [{"name": n, key: v} for n, v in zip(self.names, values)]

    def means(self) -> dict[str, dict[str, float]]:
        if not self.values:
            raise ValueError("no images were scored")
        return {where: {self.metric: float(np.mean(v))} for where, v in self.values.items()}


class Scorer:
    """Scores one image under every definition; rows merged per image (clean keys unprefixed)."""

    def __init__(self) -> None:
        self.accs = {name: make() for name, make in definitions().items()}

    def add(self, name: str, logits: np.ndarray, gt: np.ndarray) -> None:
        for definition, acc in self.accs.items():
            start = time.perf_counter()
            acc.add(name, logits, gt)
            CLOCK.add(f"{OVERLAPPING}.{definition}", time.perf_counter() - start)

    def rows(self) -> list[dict[str, Any]]:
        return merge_rows(self.accs, BASE_DEFINITION)

    def means(self) -> dict[str, dict[str, float]]:
        return {name: acc.mean() for name, acc in self.accs.items()}


def score_logits(name: str, logits: np.ndarray, gt: np.ndarray) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """One image under every definition: its merged row and its scores by definition."""
    scorer = Scorer()
    scorer.add(name, logits, gt)
    return scorer.rows()[0], {d: acc.rows[0] for d, acc in scorer.accs.items()}


@torch.no_grad()
def evaluate(
    backbone: Backbone,
    encoder: CachedEncoder,
    data: PromptedDataset,
    use_box: Optional[bool],
    device: torch.device,
    batch_size: int = 4,
    desc: str = "eval",
    precision: str = "auto",
    channels_last: bool = False,
    resolution: str = "original",
    keep: Optional[Callable[[dict[str, Any], int, np.ndarray, np.ndarray], None]] = None,
    only: Optional[tuple[str, str]] = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Score every image of ``data``; the logits are resized back to each image's own size, or with
    ``resolution="input"`` scored in the model-input frame (the resized image inside the S×S input) against
    the nearest-resized GT, as Conv-LoRA scores its square 1024 frame.

    The model runs batch after batch while one background thread scores the previous batches
    (``py_sod_metrics`` is numpy on the CPU): on a GPU the metrics leave the model's critical path.
    Images are scored in order, so the rows and means do not depend on timing. ``keep(batch, i, logits, gt)``,
    if given, sees every image's logits and GT as scored (:class:`bench.data.masks.MaskKeeper`).

    ``only=(definition, metric)`` scores that one metric (:class:`OneMetric`: a validation candidate), with no
    per-image rows; ``em_max``, a dataset-level maximum, is scored in full.

    Returns:
        Per-image rows (``name`` + every metric of every definition, see the module docstring) and the
        dataset-level means by definition (``{"clean": {...}, "infosam": {...}}``).
    """
    backbone.eval()
    acc: Any = OneMetric(*only) if only is not None and only[1] != "em_max" else Scorer()
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
                if resolution == "input":
                    h, w = backbone.resized_shape(*gt.shape)
                    logits = backbone.upscale(out.logits[i : i + 1].float())[..., :h, :w]
                    gt = batch["target"][i, :h, :w].numpy().astype("uint8")
                else:
                    logits = backbone.postprocess(out.logits[i : i + 1].float(), tuple(gt.shape))
                pending.append(
                    scorer.submit(acc.add, batch["name"][i], logits[0, 0].cpu().numpy().astype("float64"), gt)
                )
                if keep is not None:
                    keep(batch, i, logits[0, 0].cpu().numpy(), gt)
        for future in pending:
            future.result()  # re-raises a metric error (e.g. a non-binary mask) here
    return acc.rows(), acc.means()
