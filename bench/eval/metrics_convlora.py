"""Conv-LoRA's evaluation metrics for one image, as ``optim/metrics/semantic_seg_metrics.py`` of
autogluon (``multimodal/src/autogluon/multimodal/optim/metrics/``) computes them.

The model output there is the sigmoid probability p at the evaluation resolution (Conv-LoRA: the
1024 × 1024 square, the ground truth resized to it), and each metric class is fed
``pred = p · 255`` and ``gt = label · 255`` per image:

* ``_prepare_data``: ``gt > 128``; ``pred / 255`` then min-max normalised to [0, 1] (unless
  constant) — the prediction every SOD metric below sees;
* ``sm``: S-measure, α = 0.5 (``Smeasure``);
* ``em_mean``: the mean over the 256 thresholds of the E-measure curve (``Emeasure``, ``EM`` reports
  ``curve.mean()``);
* ``wfm``: weighted F-measure with β² = 0.3 (``WeightedFmeasure(beta=0.3)``: Q = (1 + β)RP / (R + βP));
  0 for an image without foreground;
* ``mae``: mean |pred − gt| on the min-max normalised prediction (``MAE_SOD``);
* ``iou``: ``torchmetrics.JaccardIndex(task="binary")`` on (p, label) per image (``Binary_IoU``),
  computed here by torchmetrics itself: p > 0.5 is foreground (p = 0.5 is background) — *not*
  min-max normalised; an image whose prediction and ground truth are both empty scores 0
  (torchmetrics' ``zero_division=0``);
* ``ber``: 1 − the macro accuracy over the two classes of ``p·255 > 125`` against ``label·255 > 125``
  (``torchmetrics.Accuracy(task="multiclass", num_classes=2, average="macro",
  multidim_average="samplewise")``): BER = 1 − (TPR + TNR) / 2; a class absent from both prediction
  and ground truth is left out of the mean (torchmetrics' macro average skips classes with
  tp + fp + fn = 0).

``sm``, ``em_mean``, ``wfm`` and ``mae`` come from ``py_sod_metrics`` (1.6.2): its classes are the
ones the autogluon file copies (same ``prepare_data``, formulas and thresholds; its SSIM divides by
N − 1 + 2.2e-16 instead of N − 1), which ``tests/bench/test_metrics_convlora.py`` checks against a
float64 numpy restatement of the autogluon code. Averaging over images (a plain mean per metric)
is left to the caller.
"""

from __future__ import annotations

import numpy as np
import torch

KEYS = ("sm", "em_mean", "wfm", "mae", "iou", "ber")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow


def binary_iou(prob: np.ndarray, gt: np.ndarray) -> float:
    """torchmetrics' binary Jaccard index of probabilities in [0, 1] (foreground: p > 0.5); 0 when the union
    is empty. ``validate_args=False``: torchmetrics' input check (a ``torch.unique`` of the whole GT, 80 % of this
    definition's time on a 250-px image) only raises on bad input, and the GT here is a checked 0/1 mask."""
    from torchmetrics.functional.classification import binary_jaccard_index  # here: importing torchmetrics takes ~3 s

    preds, target = torch.from_numpy(np.asarray(prob)), torch.from_numpy(np.asarray(gt).astype(np.int64))
    return float(binary_jaccard_index(preds, target, validate_args=False))


def balanced_error_rate(prob: np.ndarray, gt: np.ndarray) -> float:
    """1 − macro accuracy over {background, foreground} at 125/255 (classes with tp + fp + fn = 0
    skipped)."""
    pred, target = prob * 255 > 125, gt * 255 > 125
    accuracies = []
    for cls in (False, True):
        tp = np.count_nonzero((pred == cls) & (target == cls))
        fp = np.count_nonzero((pred == cls) & (target != cls))
        fn = np.count_nonzero((pred != cls) & (target == cls))
        if tp + fp + fn == 0:
            continue
        accuracies.append(tp / (tp + fn) if tp + fn else 0.0)
    return float(1.0 - np.mean(accuracies)) if accuracies else 0.0


def convlora_scores(logits: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Conv-LoRA's metrics of one image.

    Args:
        logits: (H, W) raw mask logits at the evaluation resolution.
        gt: (H, W) ground truth in {0, 1}.

    Returns:
        ``{"sm", "em_mean", "wfm", "mae", "iou", "ber"}`` as floats in [0, 1].
    """
    logits = np.asarray(logits, dtype=np.float64)
    gt = np.asarray(gt)
    if logits.shape != gt.shape or logits.ndim != 2:
        raise ValueError(f"logits and gt must be the same (H, W) shape, got {logits.shape} and {gt.shape}")
    if not np.isin(gt, (0, 1)).all():
        raise ValueError("gt must hold only 0 and 1")
    prob = _sigmoid(logits)
    pred255, gt255 = prob * 255, gt.astype(np.float64) * 255
    import py_sod_metrics as sod  # here, not at the top: with sklearn ~1.4 s that sweeps, plans, reports need not pay

    sm, em, wfm, mae = sod.Smeasure(alpha=0.5), sod.Emeasure(), sod.WeightedFmeasure(beta=0.3), sod.MAE()
    for metric in (sm, em, wfm, mae):
        metric.step(pred=pred255, gt=gt255)
    return {
        "sm": float(sm.get_results()["sm"]),
        "em_mean": float(np.mean(em.get_results()["em"]["curve"])),
        "wfm": float(wfm.get_results()["wfm"]),
        "mae": float(mae.get_results()["mae"]),
        "iou": binary_iou(prob, gt),
        "ber": balanced_error_rate(prob, gt),
    }
