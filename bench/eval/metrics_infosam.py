"""The public InfoSAM evaluation (MuyaoYuan/InfoSAM ``c35d7f9``, ``val.py`` + ``util/metrics.py``), per image.

Input: the model's **raw logits** resized to the original image size (``val.py``'s
``postprocess_masks``: bilinear to the input frame, crop the padding, bilinear to the original size)
and the ``{0, 1}`` ground truth. Nothing is passed through a sigmoid, and nothing is min-max rescaled:

* ``iou``, ``dice`` (``eval_seg``, ``metrics_type=1``): the mean over thresholds
  ``t ∈ {0.1, 0.3, 0.5, 0.7, 0.9}`` of ``P_t = logits > t`` against ``G_t = gt > t``;
  ``iou_t = (|P∩G| + 1e-6) / (|P∪G| + 1e-6)`` (``iou_b``), ``dice_t = (2|P∩G| + 1e-4) / (|P| + |G| + 1e-4)``
  (``DiceCoeff``). An empty prediction of an empty mask scores 1.
* ``sm``, ``em_adp``, ``wfm`` (``EvalSegSEF``, ``metrics_type=2``) on ``clip(logits, 0, 1)`` and
  ``gt > 0.5``: S-measure with α = 0.5, the **adaptive** E-measure (threshold ``min(2·mean, 1)``) and
  the weighted F-measure with **β² = 0.3** (``Q = 1.3·R·P / (R + 0.3·P)``). Computed with
  ``py_sod_metrics`` 1.6.2 on the float map (``normalize=False``: no rescaling), whose formulas are
  those the public code copied (checked against an independent float64 computation in the tests).

The public code averages each metric over the test images (``batch-size=1``), as
:class:`bench.eval.evaluate.DefinitionAccumulator` does. It computes no MAE, mean E-measure, BER or
boundary F1: tables report those from the clean definitions, and say so.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
IOU_SMOOTH = 1e-6
DICE_EPS = 1e-4
WFM_BETA2 = 0.3
KEYS: tuple[str, ...] = ("sm", "em_adp", "wfm", "iou", "dice")


def _check(logits: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    gt = np.asarray(gt)
    if logits.shape != gt.shape or logits.ndim != 2 or logits.size == 0:
        raise ValueError(f"logits and gt must be non-empty HxW arrays of one shape, got {logits.shape} and {gt.shape}")
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits contain NaN or infinite values")
    if not np.all((gt == 0) | (gt == 1)):
        raise ValueError(f"gt must contain only 0 and 1, got values {np.unique(gt)[:5]}")
    return logits, gt.astype(np.float64)


def threshold_iou_dice(logits: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """InfoSAM's ``eval_seg``: IoU and Dice averaged over :data:`THRESHOLDS` applied to logits and GT."""
    ious, dices = [], []
    for t in THRESHOLDS:
        p, g = logits > t, gt > t
        inter = np.count_nonzero(p & g)
        ious.append((inter + IOU_SMOOTH) / (np.count_nonzero(p | g) + IOU_SMOOTH))
        dices.append((2 * inter + DICE_EPS) / (np.count_nonzero(p) + np.count_nonzero(g) + DICE_EPS))
    return float(np.mean(ious)), float(np.mean(dices))


def infosam_scores(logits: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Every key of :data:`KEYS` for one image (definitions in the module docstring).

    Args:
        logits: ``HxW`` float raw mask logits at the original image size.
        gt: ``HxW`` mask in ``{0, 1}``.

    Raises:
        ValueError: On a shape mismatch, non-finite logits or a non-binary ``gt``.
    """
    logits, gt = _check(logits, gt)
    pred, mask = np.clip(logits, 0.0, 1.0), gt > 0.5
    import py_sod_metrics as sod  # here, not at the top: with sklearn ~1.4 s that sweeps, plans, reports need not pay

    sm, em, wfm = sod.Smeasure(alpha=0.5), sod.Emeasure(), sod.WeightedFmeasure(beta=WFM_BETA2)
    for metric in (sm, em, wfm):
        metric.step(pred=pred, gt=mask, normalize=False)
    iou, dice = threshold_iou_dice(logits, gt)
    return {
        "sm": float(sm.get_results()["sm"]),
        "em_adp": float(em.get_results()["em"]["adp"]),
        "wfm": float(wfm.get_results()["wfm"]),
        "iou": iou,
        "dice": dice,
    }
