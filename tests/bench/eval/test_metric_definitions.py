"""Both metric definitions against values computed here from the formulas (numpy, float64).

The fixed logit maps span -8 … +3, so ``clip(logits, 0, 1)`` (InfoSAM), ``sigmoid`` (clean) and the
min-max rescaling of the clean definition give visibly different maps, and thresholds on raw logits
differ from thresholds on probabilities.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.eval.evaluate import score_logits
from bench.eval.metrics_infosam import infosam_scores

EPS = np.spacing(1)


def fixtures() -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    rng = np.random.default_rng(7)
    for i in range(4):
        h, w = 37 + 6 * i, 53
        yy, xx = np.mgrid[:h, :w]
        gt = (((yy - h / 2) / (9 + i)) ** 2 + ((xx - w / 2 - i) / (13 - i)) ** 2 < 1).astype(np.uint8)
        logits = np.where(gt == 1, 1.5, -4.0) + rng.normal(0, 2.0, (h, w)) + np.sin(xx / 5.0)
        out.append((np.clip(logits, -8.0, 3.0), gt))
    return out


# ------------------------------------------------------------------ the formulas, written out here
def np_smeasure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    gt = gt.astype(bool)
    y = gt.mean()
    if y == 0:
        return 1 - pred.mean()
    if y == 1:
        return pred.mean()

    def s_object(x: np.ndarray) -> float:
        return 2 * x.mean() / (x.mean() ** 2 + 1 + x.std(ddof=1) + EPS)

    obj = y * s_object(pred[gt]) + (1 - y) * s_object(1 - pred[~gt])
    rows, cols = np.nonzero(gt)
    cy, cx = int(np.round(rows.mean())) + 1, int(np.round(cols.mean())) + 1
    h, w = gt.shape

    def ssim(p: np.ndarray, g: np.ndarray) -> float:
        n = p.size
        mx, my = p.mean(), g.mean()
        sx, sy = ((p - mx) ** 2).sum() / (n - 1), ((g - my) ** 2).sum() / (n - 1)
        sxy = ((p - mx) * (g - my)).sum() / (n - 1)
        a, b = 4 * mx * my * sxy, (mx**2 + my**2) * (sx + sy)
        return a / (b + EPS) if a != 0 else (1.0 if b == 0 else 0.0)

    g = gt.astype(np.float64)
    quads = [(slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, w)), (slice(cy, h), slice(0, cx))]
    quads.append((slice(cy, h), slice(cx, w)))
    weights = [cx * cy / (h * w), cy * (w - cx) / (h * w), (h - cy) * cx / (h * w)]
    weights.append(1 - sum(weights))
    region = sum(wt * ssim(pred[q], g[q]) for wt, q in zip(weights, quads))
    return max(0.0, alpha * obj + (1 - alpha) * region)


def np_emeasure(binary: np.ndarray, gt: np.ndarray) -> float:
    """Pixel-wise enhanced alignment of a binary map (Fan et al. 2018)."""
    fm, g = binary.astype(np.float64), gt.astype(np.float64)
    n = g.size
    if g.sum() == 0:
        enhanced = 1 - fm
    elif g.sum() == n:
        enhanced = fm
    else:
        a, b = fm - fm.mean(), g - g.mean()
        enhanced = (2 * a * b / (a**2 + b**2 + EPS) + 1) ** 2 / 4
    return enhanced.sum() / (n - 1 + EPS)


def np_weighted_f(pred: np.ndarray, gt: np.ndarray, beta2: float) -> float:
    """Margolin et al. 2014 with the MATLAB reference's 7×7, σ = 5 Gaussian and zero boundary."""
    from scipy.ndimage import distance_transform_edt

    gt = gt.astype(bool)
    err = np.abs(pred - gt)
    dist, (iy, ix) = distance_transform_edt(~gt, return_indices=True)
    et = err.copy()
    et[~gt] = err[iy[~gt], ix[~gt]]
    r = np.arange(-3, 4)
    kernel = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 25.0))
    kernel /= kernel.sum()
    padded = np.pad(et, 3)
    ea = sum(kernel[i, j] * padded[i : i + et.shape[0], j : j + et.shape[1]] for i in range(7) for j in range(7))
    min_e = np.where(gt & (ea < err), ea, err)
    weight = np.where(gt, 1.0, 2 - np.exp(np.log(0.5) / 5 * dist))
    ew = min_e * weight
    tpw, fpw = gt.sum() - ew[gt].sum(), ew[~gt].sum()
    recall, precision = 1 - ew[gt].mean(), tpw / (tpw + fpw + EPS)
    return (1 + beta2) * recall * precision / (recall + beta2 * precision + EPS)


def np_threshold_iou_dice(logits: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    ious, dices = [], []
    for t in (0.1, 0.3, 0.5, 0.7, 0.9):
        p, g = logits > t, gt > t
        ious.append(((p & g).sum() + 1e-6) / ((p | g).sum() + 1e-6))
        dices.append((2 * (p & g).sum() + 1e-4) / (p.sum() + g.sum() + 1e-4))
    return float(np.mean(ious)), float(np.mean(dices))


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("index", range(4))
def test_infosam_definitions_equal_the_formulas_on_raw_logits(index):
    logits, gt = fixtures()[index]
    got = infosam_scores(logits, gt)
    pred = np.clip(logits, 0, 1)  # no sigmoid, no min-max
    iou, dice = np_threshold_iou_dice(logits, gt)
    expected = {
        "sm": np_smeasure(pred, gt),
        "em_adp": np_emeasure(pred >= min(2 * pred.mean(), 1), gt),
        "wfm": np_weighted_f(pred, gt, beta2=0.3),
        "iou": iou,
        "dice": dice,
    }
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize("index", range(4))
def test_clean_definitions_equal_the_formulas_on_probabilities(index):
    logits, gt = fixtures()[index]
    _, by_definition = score_logits("x", logits, gt)
    got = by_definition["clean"]
    prob = 1 / (1 + np.exp(-logits))
    u8 = np.rint(prob * 255) / 255  # what the clean definition hands py_sod_metrics (uint8)
    pred = (u8 - u8.min()) / (u8.max() - u8.min())  # its min-max rescaling
    binary, g = prob > 0.5, gt.astype(bool)
    inter, union = (binary & g).sum(), (binary | g).sum()
    expected = {
        "sm": np_smeasure(pred, gt),
        "em_adp": np_emeasure(pred >= min(2 * pred.mean(), 1), gt),
        "wfm": np_weighted_f(pred, gt, beta2=1.0),
        "mae": np.abs(pred - g).mean(),
        "iou": inter / union,
        "dice": 2 * inter / (binary.sum() + g.sum()),
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_the_fixtures_separate_the_definitions():
    """Guards the two tests above: on these maps the definitions differ by far more than their tolerance."""
    gaps = {k: [] for k in ("sm", "em_adp", "wfm", "iou", "dice")}
    for logits, gt in fixtures():
        _, by_definition = score_logits("x", logits, gt)
        for key in gaps:
            gaps[key].append(abs(by_definition["clean"][key] - by_definition["infosam"][key]))
    assert all(max(v) > 0.01 for v in gaps.values()), gaps


def test_infosam_edge_cases():
    gt = np.zeros((8, 8), dtype=np.uint8)
    empty = infosam_scores(np.full((8, 8), -3.0), gt)  # nothing predicted, nothing there
    assert empty["iou"] == pytest.approx(1.0) and empty["dice"] == pytest.approx(1.0)
    assert empty["sm"] == pytest.approx(1.0) and empty["wfm"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        infosam_scores(np.zeros((8, 8)), np.zeros((8, 9), dtype=np.uint8))
    with pytest.raises(ValueError, match="0 and 1"):
        infosam_scores(np.zeros((8, 8)), np.full((8, 8), 255, dtype=np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        infosam_scores(np.full((8, 8), np.nan), gt)
