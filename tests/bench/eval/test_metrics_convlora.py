"""bench.eval.metrics_convlora against a float64 numpy restatement of autogluon's semantic_seg_metrics.py."""

from __future__ import annotations

import numpy as np
import pytest

from bench.eval.metrics_convlora import convlora_scores
from tests.bench.eval.test_metric_definitions import np_smeasure, np_weighted_f  # the formulas, written out once

EPS = np.spacing(1)


def _prepare(p255: np.ndarray, g255: np.ndarray):
    gt = g255 > 128
    pred = p255 / 255
    if pred.max() != pred.min():
        pred = (pred - pred.min()) / (pred.max() - pred.min())
    return pred, gt


def _e_measure_curve_mean(pred, gt):
    size, fg = gt.size, np.count_nonzero(gt)
    q = (pred * 255).astype(np.uint8)
    scores = []
    for t in range(256):  # threshold t: pixels with q >= 255 - t are foreground (the flipped cumsum)
        binary = q >= 255 - t
        if fg == 0:
            total = np.count_nonzero(~binary)
        elif fg == size:
            total = np.count_nonzero(binary)
        else:
            mp, mg = binary.mean(), gt.mean()
            dp = binary.astype(np.float64) - mp
            dg = gt.astype(np.float64) - mg
            align = 2 * dp * dg / (dp**2 + dg**2 + EPS)
            total = ((align + 1) ** 2 / 4).sum()
        scores.append(total / (size - 1 + EPS))
    return float(np.mean(scores))


def _reference(logits: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    prob = 1 / (1 + np.exp(-logits))
    pred, g = _prepare(prob * 255, gt * 255.0)
    hard, target = prob > 0.5, gt == 1  # torchmetrics: preds > threshold
    union = (hard | target).sum()
    p125, t125 = prob * 255 > 125, gt * 255 > 125
    tpr = (p125 & t125).sum() / t125.sum() if t125.any() else None
    tnr = (~p125 & ~t125).sum() / (~t125).sum() if (~t125).any() else None
    rates = [r for r in (tpr, tnr) if r is not None]
    return {
        "sm": np_smeasure(pred, g),
        "em_mean": _e_measure_curve_mean(pred, g),
        "wfm": np_weighted_f(pred, g, beta2=0.3),
        "mae": np.abs(pred - g).mean(),
        "iou": (hard & target).sum() / union if union else 0.0,
        "ber": 1 - np.mean(rates),
    }


def _fixture(h: int = 40, w: int = 48):
    yy, xx = np.mgrid[0:h, 0:w]
    gt = (((yy - 17) / 11.0) ** 2 + ((xx - 27) / 14.0) ** 2 < 1).astype(np.uint8)
    logits = 3.0 * np.sin(0.37 * yy + 0.11 * xx) + 4.0 * (gt - 0.5) + 0.8 * np.cos(0.9 * xx)
    return logits, gt


def test_convlora_scores_match_the_numpy_restatement():
    logits, gt = _fixture()
    got, ref = convlora_scores(logits, gt), _reference(logits, gt)
    assert set(got) == {"sm", "em_mean", "wfm", "mae", "iou", "ber"}
    assert 0.3 < ref["iou"] < 0.95 and 0.05 < ref["ber"] < 0.5  # a non-trivial fixture
    # same float64 operations up to summation order and py_sod_metrics' N - 1 + eps in the SSIM
    for key in ref:
        rel = 1e-6 if key == "iou" else 1e-9  # torchmetrics' Jaccard index is a float32 division
        assert got[key] == pytest.approx(ref[key], rel=rel, abs=1e-12), key


def test_convlora_iou_and_ber_on_hand_counted_masks():
    gt = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], dtype=np.uint8)
    logits = np.array([[5.0, -5.0, 5.0, -5.0], [5.0, 5.0, -5.0, -5.0]])
    scores = convlora_scores(logits, gt)
    # predicted {3 of the 4 fg pixels + 1 bg}: IoU = 3 / 5; TPR = 3/4, TNR = 3/4 → BER = 1/4
    assert scores["iou"] == pytest.approx(3 / 5) and scores["ber"] == pytest.approx(0.25)
    empty = convlora_scores(np.full((4, 4), -6.0), np.zeros((4, 4), dtype=np.uint8))
    assert empty["iou"] == 0.0 and empty["ber"] == 0.0 and empty["wfm"] == 0.0
    ref = _reference(np.full((4, 4), -6.0), np.zeros((4, 4)))
    assert empty["sm"] == pytest.approx(ref["sm"]) and empty["mae"] == pytest.approx(ref["mae"])


def test_convlora_iou_is_torchmetrics_and_half_is_background():
    import torch
    import torchmetrics

    from bench.eval.metrics_convlora import binary_iou

    # logit 0 → p = 0.5 exactly: background under torchmetrics' preds > 0.5 (1 of 2 fg pixels predicted)
    gt = np.array([[1, 1], [0, 0]], dtype=np.uint8)
    assert convlora_scores(np.array([[5.0, 0.0], [-5.0, -5.0]]), gt)["iou"] == pytest.approx(1 / 2)
    assert binary_iou(np.array([[0.5, 0.5000001]]), np.array([[1, 1]])) == pytest.approx(1 / 2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        prob = rng.random((16, 24))
        prob[rng.random(prob.shape) < 0.1] = 0.5  # ties at the threshold
        target = (rng.random(prob.shape) < 0.4).astype(np.uint8)
        expected = torchmetrics.JaccardIndex(task="binary")(torch.from_numpy(prob), torch.from_numpy(target))
        assert binary_iou(prob, target) == pytest.approx(float(expected), abs=1e-7)


def test_convlora_scores_reject_bad_input():
    with pytest.raises(ValueError, match="shape"):
        convlora_scores(np.zeros((3, 4)), np.zeros((4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="0 and 1"):
        convlora_scores(np.zeros((2, 2)), np.full((2, 2), 255, dtype=np.uint8))
