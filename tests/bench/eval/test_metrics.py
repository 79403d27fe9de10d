"""Tests for bench/eval/metrics.py: agreement with py_sod_metrics, hand-computed values, conventions."""

from __future__ import annotations

import numpy as np
import py_sod_metrics as sod
import pytest

from bench.eval.metrics import METRICS, MetricAccumulator, _inner_boundary, boundary_f1, score_image

SOD_KEYS = ("sm", "em_adp", "em_mean", "em_max", "wfm", "mae")


def _disk(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2).astype(np.uint8)


def _soft_disk(h: int, w: int, cy: float, cx: float, r: float, softness: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return 1.0 / (1.0 + np.exp((d - r) / softness))


def _pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Deterministic (prob, gt) pairs: varying, non-square sizes, plus empty/constant edge cases."""
    rng = np.random.default_rng(0)
    pairs = []
    # soft disk vs disk + rectangle
    h, w = 60, 90
    gt = _disk(h, w, 30, 35, 15)
    gt[10:20, 60:85] = 1
    pairs.append((_soft_disk(h, w, 31, 37, 14, 2.0), gt))
    # smaller, taller image, prediction with a spurious blob and noise
    h, w = 80, 50
    gt = _disk(h, w, 50, 25, 12)
    prob = 0.8 * _soft_disk(h, w, 48, 24, 13, 1.5) + 0.6 * _soft_disk(h, w, 15, 10, 5, 1.0)
    prob = np.clip(prob + 0.05 * rng.random((h, w)), 0.0, 1.0)
    pairs.append((prob, gt))
    # prediction that never exceeds 0.5 (min-max rescaling matters)
    h, w = 40, 70
    gt = np.zeros((h, w), np.uint8)
    gt[5:30, 20:50] = 1
    pairs.append((0.4 * _soft_disk(h, w, 18, 35, 12, 3.0), gt))
    # empty GT (library conventions: wfm = 0) with a faint prediction
    pairs.append((0.3 * rng.random((30, 45)), np.zeros((30, 45), np.uint8)))
    # constant prediction (not rescaled by the library)
    h, w = 35, 35
    pairs.append((np.full((h, w), 0.2), _disk(h, w, 17, 17, 8)))
    return pairs


def _to_u8(prob: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.rint(prob * 255).astype(np.uint8), gt.astype(np.uint8) * 255


def test_metrics_table() -> None:
    assert list(METRICS) == [
        "sm", "em_adp", "em_mean", "em_max", "wfm", "mae", "iou", "dice", "ber",
        "bf1_0", "bf1_1", "bf1_2", "bf1_3",
    ]  # fmt: skip
    lower_better = {k for k, info in METRICS.items() if not info.higher_better}
    assert lower_better == {"mae", "ber"}
    assert METRICS["bf1_2"].label == "BF1@2px"
    assert METRICS["sm"].label == "S_α"


# 1. agreement with py_sod_metrics stepped over the same pairs
def test_accumulator_mean_matches_py_sod_metrics() -> None:
    acc = MetricAccumulator()
    sm, em, wfm, mae = sod.Smeasure(), sod.Emeasure(), sod.WeightedFmeasure(), sod.MAE()
    for i, (prob, gt) in enumerate(_pairs()):
        row = acc.add(f"img{i}", prob, gt)
        assert set(row) == set(METRICS)
        pred_u8, gt_u8 = _to_u8(prob, gt)
        for m in (sm, em, wfm, mae):
            m.step(pred=pred_u8, gt=gt_u8)
    em_res = em.get_results()["em"]
    expected = {
        "sm": sm.get_results()["sm"],
        "em_adp": em_res["adp"],
        "em_mean": em_res["curve"].mean(),
        "em_max": em_res["curve"].max(),
        "wfm": wfm.get_results()["wfm"],
        "mae": mae.get_results()["mae"],
    }
    got = acc.mean()
    assert len(acc.rows) == len(_pairs()) and acc.rows[0]["name"] == "img0"
    for key in SOD_KEYS:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-12, err_msg=key)
    # all other metrics are plain means of the rows
    for key in set(METRICS) - {"em_max"}:
        np.testing.assert_allclose(got[key], np.mean([r[key] for r in acc.rows]), rtol=1e-12)


def test_em_max_is_dataset_level_not_mean_of_per_image_max() -> None:
    acc = MetricAccumulator()
    for i, (prob, gt) in enumerate(_pairs()):
        acc.add(str(i), prob, gt)
    mean_of_maxima = np.mean([r["em_max"] for r in acc.rows])
    # max of the mean curve <= mean of per-image maxima, strictly here (different best thresholds)
    assert acc.mean()["em_max"] < mean_of_maxima - 1e-6


def test_per_image_values_match_fresh_library_objects() -> None:
    prob, gt = _pairs()[1]
    pred_u8, gt_u8 = _to_u8(prob, gt)
    sm = sod.Smeasure()
    sm.step(pred=pred_u8, gt=gt_u8)
    em = sod.Emeasure()
    em.step(pred=pred_u8, gt=gt_u8)
    scores = score_image(prob, gt)
    np.testing.assert_allclose(scores["sm"], sm.get_results()["sm"], rtol=1e-12)
    np.testing.assert_allclose(scores["em_max"], em.get_results()["em"]["curve"].max(), rtol=1e-12)


def test_mean_without_images_raises() -> None:
    with pytest.raises(ValueError, match="no images"):
        MetricAccumulator().mean()


# 2. iou / dice / ber
def test_binary_metrics_hand_computed() -> None:
    gt = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.uint8)
    prob = np.array([[0.9, 0.6, 0.7, 0.0], [0.4, 0.8, 0.0, 0.0], [0.0] * 4, [0.0, 0.5, 0.0, 0.0]])
    # P = {(0,0),(0,1),(0,2),(1,1)} (0.5 is not > 0.5); TP=3, FP=1, FN=1, TN=11
    s = score_image(prob, gt)
    assert s["iou"] == pytest.approx(3 / 5)
    assert s["dice"] == pytest.approx(6 / 8)
    assert s["ber"] == pytest.approx(1 - (3 / 4 + 11 / 12) / 2)  # = 1/6


@pytest.mark.parametrize(
    ("pred_pixels", "gt_pixels", "iou", "dice", "ber"),
    [
        ([], [], 1.0, 1.0, 0.0),  # both empty; gt has no positives -> ber = 1 - TNR = 0
        ([], [(1, 1), (1, 2)], 0.0, 0.0, 0.5),  # prediction empty: TPR=0, TNR=1
        ([(0, 0), (3, 3)], [], 0.0, 0.0, 2 / 16),  # gt empty: ber = 1 - TNR = 1 - 14/16
    ],
)
def test_binary_metrics_empty_conventions(pred_pixels, gt_pixels, iou, dice, ber) -> None:
    prob = np.zeros((4, 4))
    gt = np.zeros((4, 4), np.uint8)
    for p in pred_pixels:
        prob[p] = 0.9
    for p in gt_pixels:
        gt[p] = 1
    s = score_image(prob, gt)
    assert (s["iou"], s["dice"], s["ber"]) == pytest.approx((iou, dice, ber))


def test_ber_all_foreground_gt_uses_tpr_only() -> None:
    prob = np.full((3, 5), 0.9)
    prob[0, :2] = 0.1  # 2 of 15 positives missed
    s = score_image(prob, np.ones((3, 5), np.uint8))
    assert s["ber"] == pytest.approx(2 / 15)


def test_binary_metrics_match_py_sod_metrics_handlers() -> None:
    fm = sod.FmeasureV2(
        metric_handlers={
            "iou": sod.IOUHandler(with_dynamic=False, with_adaptive=False, with_binary=True),
            "dice": sod.DICEHandler(with_dynamic=False, with_adaptive=False, with_binary=True),
            "ber": sod.BERHandler(with_dynamic=False, with_adaptive=False, with_binary=True),
        }
    )
    acc = MetricAccumulator()
    for i, (prob, gt) in enumerate(_pairs()[:3]):  # non-degenerate pairs
        acc.add(str(i), prob, gt)
        # normalize=False so the library thresholds the raw prob at 0.5, as we do
        fm.step(pred=prob.astype(np.float64), gt=gt.astype(bool), normalize=False)
    res = fm.get_results()
    got = acc.mean()
    for key in ("iou", "dice", "ber"):
        np.testing.assert_allclose(got[key], res[key]["binary"], rtol=1e-12, err_msg=key)


# 3. boundary F1
def _square(shape: tuple[int, int], top: int, left: int, size: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top : top + size, left : left + size] = True
    return m


def test_boundary_f1_shift_by_one() -> None:
    gt = _square((30, 40), 8, 10, 12)
    pred = _square((30, 40), 8, 11, 12)  # shifted right by 1 px
    # exact matches: top and bottom rows overlap in 11 px each -> 22 of 44 boundary px on each side
    assert boundary_f1(pred, gt, 0) == pytest.approx(0.5)
    for k in (1, 2, 3):
        assert boundary_f1(pred, gt, k) == 1.0


def test_boundary_f1_shift_by_two() -> None:
    gt = _square((30, 40), 8, 10, 12)
    pred = _square((30, 40), 8, 12, 12)  # shifted right by 2 px
    assert boundary_f1(pred, gt, 0) < 1.0
    assert boundary_f1(pred, gt, 1) < 1.0
    assert boundary_f1(pred, gt, 0) < boundary_f1(pred, gt, 1)
    assert boundary_f1(pred, gt, 2) == 1.0
    assert boundary_f1(pred, gt, 3) == 1.0


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_boundary_f1_identical_masks(k: int) -> None:
    m = _square((20, 25), 3, 4, 9) | _square((20, 25), 10, 15, 6)
    assert boundary_f1(m, m, k) == 1.0


def test_boundary_f1_hand_counted() -> None:
    gt = np.zeros((5, 5), bool)
    gt[1:4, 1:4] = True  # 3x3 square: boundary = 8-px ring, (2, 2) is interior
    pred = np.zeros((5, 5), bool)
    pred[1:4, 1:3] = True  # 3x2 block: all 6 px are boundary; (2, 2) is not on the GT ring
    precision, recall = 5 / 6, 5 / 8
    assert boundary_f1(pred, gt, 0) == pytest.approx(2 * precision * recall / (precision + recall))  # 5/7
    assert boundary_f1(pred, gt, 1) == 1.0


def test_boundary_f1_image_border_is_not_a_boundary() -> None:
    gt = np.zeros((4, 6), bool)
    gt[:, :3] = True  # touches top, bottom and left borders: boundary is column 2 only
    pred = np.zeros((4, 6), bool)
    pred[:, :2] = True  # boundary is column 1 only
    assert boundary_f1(pred, gt, 0) == 0.0  # no shared border pixels are counted
    assert boundary_f1(pred, gt, 1) == 1.0
    full = np.ones((4, 6), bool)
    assert boundary_f1(full, full, 0) == 1.0  # both boundaries empty
    assert boundary_f1(full, gt, 3) == 0.0  # prediction boundary empty, GT not


def test_inner_boundary_is_four_connected_and_ignores_image_border() -> None:
    mask = np.array(
        [
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
        ],
        bool,
    )
    # (1, 3) and (2, 4) touch the background only diagonally at the concave corner, so they are
    # interior with 4-neighbour erosion; pixels on the image border are not boundary either.
    expected = np.array(
        [
            [0, 0, 0, 1, 0, 0],
            [0, 0, 0, 1, 0, 0],
            [0, 0, 0, 0, 1, 1],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        bool,
    )
    np.testing.assert_array_equal(_inner_boundary(mask), expected)


def test_boundary_f1_empty_conventions() -> None:
    empty = np.zeros((10, 10), bool)
    sq = _square((10, 10), 2, 2, 4)
    assert boundary_f1(empty, empty, 0) == 1.0
    assert boundary_f1(empty, sq, 3) == 0.0
    assert boundary_f1(sq, empty, 3) == 0.0


def test_score_image_bf1_uses_thresholded_prob() -> None:
    gt = _square((30, 40), 8, 10, 12).astype(np.uint8)
    prob = np.where(_square((30, 40), 8, 11, 12), 0.7, 0.2)
    s = score_image(prob, gt)
    assert s["bf1_0"] == pytest.approx(0.5)
    assert s["bf1_1"] == s["bf1_2"] == s["bf1_3"] == 1.0


def test_binary_threshold_is_strictly_above_half() -> None:
    gt = np.zeros((4, 4), np.uint8)
    gt[1:3, 1:3] = 1
    prob = gt * 0.5  # exactly 0.5 on the GT: not foreground
    s = score_image(prob, gt)
    assert (s["iou"], s["dice"]) == (0.0, 0.0)
    s = score_image(np.nextafter(prob, 1.0) * gt, gt)
    assert (s["iou"], s["dice"], s["ber"]) == (1.0, 1.0, 0.0)


# 4. input validation
@pytest.mark.parametrize(
    ("prob", "gt", "match"),
    [
        (np.full((4, 4), 1.2), np.zeros((4, 4), np.uint8), r"\[0, 1\]"),
        (np.full((4, 4), -0.1), np.zeros((4, 4), np.uint8), r"\[0, 1\]"),
        (np.full((4, 4), np.nan), np.zeros((4, 4), np.uint8), "NaN"),
        (np.zeros((4, 5)), np.zeros((4, 4), np.uint8), "shape mismatch"),
        (np.zeros((4, 4)), np.full((4, 4), 255, np.uint8), "only 0 and 1"),
    ],
)
def test_invalid_inputs_raise(prob, gt, match) -> None:
    with pytest.raises(ValueError, match=match):
        score_image(prob, gt)
    acc = MetricAccumulator()
    with pytest.raises(ValueError, match=match):
        acc.add("bad", prob, gt)
    assert acc.rows == []


def test_boundary_f1_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        boundary_f1(np.zeros((3, 3), bool), np.zeros((3, 4), bool), 1)
    with pytest.raises(ValueError, match="tolerance"):
        boundary_f1(np.zeros((3, 3), bool), np.zeros((3, 3), bool), -1)
