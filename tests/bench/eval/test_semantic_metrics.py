"""bench.eval.semantic: hand-computed values, an independent numpy restatement of the clean definition and a
torch restatement of autogluon's Multiclass_IoU (Trans2Seg score.py) for the convlora definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.eval.semantic import SemanticAccumulator, _histc

CLASSES = ("bg", "road", "car", "sky")  # "sky" is in no GT and no prediction of the data set below
K = len(CLASSES)
IGN = 255

# Image A: "car" only predicted on ignored pixels, absent from the GT; one ignored pixel predicted "road".
GT_A = np.array(
    [
        [0, 0, 1, 1, IGN],
        [0, 0, 1, 1, IGN],
        [0, 1, 1, 1, 1],
        [0, 0, 0, 1, 1],
    ],
    dtype=np.uint8,
)
PRED_A = np.array(
    [
        [0, 0, 1, 1, 2],
        [0, 1, 1, 1, 1],
        [0, 1, 1, 0, 1],
        [0, 0, 0, 1, 1],
    ]
)
# Image B: "car" present; ignored pixels predicted "bg" and "car".
GT_B = np.array(
    [
        [2, 2, 0, 0, 0],
        [2, 2, 0, 0, 0],
        [0, 0, 0, 1, 1],
        [IGN, IGN, 0, 1, 1],
    ],
    dtype=np.uint8,
)
PRED_B = np.array(
    [
        [2, 2, 2, 0, 0],
        [2, 0, 0, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 2, 0, 1, 1],
    ]
)
IMAGES = [("a", PRED_A, GT_A), ("b", PRED_B, GT_B)]
EPS = 2.220446049250313e-16


def _filled(definition: str, images=IMAGES, classes=CLASSES, ignore_index=IGN) -> SemanticAccumulator:
    acc = SemanticAccumulator(classes, ignore_index=ignore_index, definition=definition)
    for name, pred, gt in images:
        acc.add(name, pred, gt)
    return acc


def _assert_scores(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if isinstance(value, str):
            assert got[key] == value, key
        elif math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


# --- the clean definition, restated with per-class boolean masks --------------------------------------------


def _clean_reference(images, k=K, ignore_index=IGN) -> tuple[list[dict], dict]:
    def scores(inter, union, correct, labeled):
        iou = [i / u if u else float("nan") for i, u in zip(inter, union)]
        present = [v for v in iou if not math.isnan(v)]
        return {
            "acc": correct / labeled if labeled else float("nan"),
            "miou": sum(present) / len(present) if present else float("nan"),
            **{f"iou_{CLASSES[c]}": iou[c] for c in range(k)},
        }

    rows, tot_i, tot_u, tot_c, tot_l = [], [0] * k, [0] * k, 0, 0
    for _, pred, gt in images:
        lab = gt != ignore_index
        inter = [int(((pred == c) & (gt == c) & lab).sum()) for c in range(k)]
        union = [int((((pred == c) | (gt == c)) & lab).sum()) for c in range(k)]
        correct, labeled = int(((pred == gt) & lab).sum()), int(lab.sum())
        rows.append(scores(inter, union, correct, labeled))
        tot_i = [a + b for a, b in zip(tot_i, inter)]
        tot_u = [a + b for a, b in zip(tot_u, union)]
        tot_c, tot_l = tot_c + correct, tot_l + labeled
    return rows, scores(tot_i, tot_u, tot_c, tot_l)


# --- the convlora definition: autogluon's Multiclass_IoU + Trans2Seg's batch_pix_accuracy, in torch ----------


def _ag_batch_intersection_union(output: torch.Tensor, target: torch.Tensor, num_classes: int):
    mini, maxi, nbins = 1, num_classes, num_classes
    predict = torch.argmax(output, 1) + 1
    target = target.float() + 1
    predict = predict.float() * (target > 0).float()
    intersection = predict * (predict == target).float()
    area_inter = torch.histc(intersection, bins=nbins, min=mini, max=maxi)
    area_pred = torch.histc(predict, bins=nbins, min=mini, max=maxi)
    area_lab = torch.histc(target, bins=nbins, min=mini, max=maxi)
    area_union = area_pred + area_lab - area_inter
    assert torch.sum(area_inter > area_union).item() == 0
    return area_inter.float(), area_union.float()


def _t2s_batch_pix_accuracy(output: torch.Tensor, target: torch.Tensor):
    predict = torch.argmax(output.long(), 1) + 1
    target = target.long() + 1
    pixel_labeled = torch.sum(target > 0).item()
    pixel_correct = torch.sum((predict == target) * (target > 0)).item()
    return pixel_correct, pixel_labeled


def _logits(pred: np.ndarray, k=K) -> torch.Tensor:
    """(1, K, H, W) scores whose argmax over dim 1 is ``pred``."""
    return torch.nn.functional.one_hot(torch.as_tensor(pred).long(), k).permute(2, 0, 1)[None].float()


def _convlora_reference(images, k=K) -> tuple[list[dict], dict]:
    def scores(inter, union, correct, labeled):
        iou = 1.0 * inter.double() / (EPS + union.double())
        return {
            "acc": 1.0 * correct / (EPS + labeled),
            "miou": iou.mean().item(),
            **{f"iou_{CLASSES[c]}": iou[c].item() for c in range(k)},
        }

    rows = []
    total_inter, total_union, total_c, total_l = torch.zeros(k), torch.zeros(k), 0, 0
    for _, pred, gt in images:
        output, target = _logits(pred, k), torch.as_tensor(gt.astype(np.int64))[None]
        inter, union = _ag_batch_intersection_union(output, target, k)
        correct, labeled = _t2s_batch_pix_accuracy(output, target)
        rows.append(scores(inter, union, correct, labeled))
        total_inter += inter
        total_union += union
        total_c, total_l = total_c + correct, total_l + labeled
    return rows, scores(total_inter, total_union, total_c, total_l)


# --- tests ---------------------------------------------------------------------------------------------------


def test_clean_hand_values():
    acc = _filled("clean")
    nan = float("nan")
    _assert_scores(
        acc.rows[0],
        {"name": "a", "acc": 16 / 18, "miou": (7 / 9 + 9 / 11) / 2, "iou_bg": 7 / 9, "iou_road": 9 / 11}
        | {"iou_car": nan, "iou_sky": nan},
    )
    _assert_scores(
        acc.rows[1],
        {"name": "b", "acc": 15 / 18, "miou": 0.7, "iou_bg": 0.75, "iou_road": 0.75, "iou_car": 0.6, "iou_sky": nan},
    )
    # dataset: summed I = [16, 12, 3, 0], U = [21, 15, 5, 0]
    _assert_scores(
        acc.mean(),
        {"acc": 31 / 36, "miou": (16 / 21 + 0.8 + 0.6) / 3, "iou_bg": 16 / 21, "iou_road": 0.8, "iou_car": 0.6}
        | {"iou_sky": nan},
    )


def test_convlora_hand_values():
    """Ignored pixels inflate the union of their predicted class and the accuracy's denominator."""
    acc = _filled("convlora")
    # A: the ignored pixel predicted "road" adds to its union (9/12, clean 9/11); "car" only predicted on an
    # ignored pixel: union 1, IoU 0 (clean NaN); "sky" 0 and averaged in; acc over all 20 pixels.
    _assert_scores(
        acc.rows[0],
        {"name": "a", "acc": 16 / 20, "miou": (7 / 9 + 9 / 12) / 4, "iou_bg": 7 / 9, "iou_road": 9 / 12}
        | {"iou_car": 0.0, "iou_sky": 0.0},
    )
    _assert_scores(
        acc.rows[1],
        {"name": "b", "acc": 15 / 20, "miou": (9 / 13 + 0.75 + 0.5) / 4, "iou_bg": 9 / 13, "iou_road": 0.75}
        | {"iou_car": 0.5, "iou_sky": 0.0},
    )
    # dataset: I = [16, 12, 3, 0], U = [22, 16, 7, 0]
    _assert_scores(
        acc.mean(),
        {"acc": 31 / 40, "miou": (16 / 22 + 0.75 + 3 / 7) / 4, "iou_bg": 16 / 22, "iou_road": 0.75}
        | {"iou_car": 3 / 7, "iou_sky": 0.0},
    )


def _random_images(seed: int, n: int = 5, shape=(6, 7), k=K, absent=3):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        gt = rng.integers(0, k, size=shape).astype(np.uint8)
        pred = rng.integers(0, k, size=shape)
        gt[gt == absent] = 0  # class `absent` never in the GT ...
        pred[pred == absent] = 1  # ... nor predicted
        if i == 1:
            gt[gt == 2] = 1  # class 2 absent from this image
            pred[pred == 2] = 0
        gt[rng.random(shape) < 0.2] = IGN
        out.append((f"img{i}", pred, gt))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_matches_reference(seed):
    images = _random_images(seed) + IMAGES
    acc = _filled("clean", images)
    rows, mean = _clean_reference(images)
    for got, expected, (name, _, _) in zip(acc.rows, rows, images):
        _assert_scores(got, {"name": name, **expected})
    _assert_scores(acc.mean(), mean)
    assert math.isnan(acc.rows[1]["iou_car"])  # absent from image 1: NaN, skipped in its miou


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_convlora_matches_torch_restatement(seed):
    images = _random_images(seed) + IMAGES
    acc = _filled("convlora", images)
    rows, mean = _convlora_reference(images)
    for got, expected, (name, _, _) in zip(acc.rows, rows, images):
        _assert_scores(got, {"name": name, **expected})
    _assert_scores(acc.mean(), mean)


def test_convlora_one_batch_equals_image_by_image():
    """autogluon updates per batch; summing per image gives the same totals."""
    output = torch.cat([_logits(PRED_A), _logits(PRED_B)])
    target = torch.as_tensor(np.stack([GT_A, GT_B]).astype(np.int64))
    inter, union = _ag_batch_intersection_union(output, target, K)
    acc = _filled("convlora")
    expected = (inter.double() / (EPS + union.double())).tolist()
    assert [acc.mean()[f"iou_{c}"] for c in CLASSES] == pytest.approx(expected, rel=1e-12)


def test_class_absent_from_dataset_clean_nan_vs_convlora_zero():
    clean, conv = _filled("clean").mean(), _filled("convlora").mean()
    assert math.isnan(clean["iou_sky"])
    assert clean["miou"] == pytest.approx(np.mean([clean[f"iou_{c}"] for c in ("bg", "road", "car")]))
    assert conv["iou_sky"] == 0.0
    assert conv["miou"] == pytest.approx(np.mean([conv[f"iou_{c}"] for c in CLASSES]))
    assert conv["miou"] < np.mean([conv[f"iou_{c}"] for c in ("bg", "road", "car")])


def test_clean_ignore_pixels_take_no_part():
    """Changing the prediction on ignored pixels changes nothing under clean (but does under convlora)."""
    other_a = PRED_A.copy()
    other_a[GT_A == IGN] = 0
    images = [("a", other_a, GT_A), IMAGES[1]]
    changed, original = _filled("clean", images), _filled("clean")
    for got, expected in zip(changed.rows, original.rows):
        _assert_scores(got, expected)
    _assert_scores(changed.mean(), original.mean())
    assert _filled("convlora", images).rows[0] != _filled("convlora").rows[0]


def test_convlora_ignore_minus_one_is_masked():
    """With ignore_index = -1 the +1 convention does mask: target 0, so the pixel is out of every histc."""
    gt = GT_A.astype(np.int64)
    gt[gt == IGN] = -1
    row = _filled("convlora", [("a", PRED_A, gt)], ignore_index=-1).rows[0]
    assert row["iou_road"] == pytest.approx(9 / 11)
    assert row["acc"] == pytest.approx(16 / 18)
    assert row["iou_car"] == 0.0  # still 0, not NaN


@pytest.mark.parametrize("definition", ["clean", "convlora"])
def test_dataset_value_is_not_mean_of_rows(definition):
    acc = _filled(definition)
    mean = acc.mean()
    for key in ("miou", "iou_bg"):
        per_image = np.nanmean([row[key] for row in acc.rows])
        assert mean[key] != pytest.approx(per_image, abs=1e-6), key


@pytest.mark.parametrize("k", [2, 3, 4, 7, 19])
def test_histc_restatement_matches_torch(k):
    rng = np.random.default_rng(k)
    values = np.concatenate([rng.integers(-2, k + 3, size=500), [0, 1, k, k + 1, 256, -1]])
    expected = torch.histc(torch.as_tensor(values).float(), bins=k, min=1, max=k)
    np.testing.assert_array_equal(_histc(values, k), expected.numpy().astype(np.int64))


def test_rows_keep_order_and_names():
    acc = _filled("clean")
    assert [r["name"] for r in acc.rows] == ["a", "b"]
    assert list(acc.rows[0]) == ["name", "acc", "miou", *(f"iou_{c}" for c in CLASSES)]
    assert len(acc) == 2


@pytest.mark.parametrize("definition", ["clean", "convlora"])
@pytest.mark.parametrize(
    ("pred", "gt", "message"),
    [
        (PRED_A[:, :4], GT_A, "shape mismatch"),
        (np.where(PRED_A == 2, K, PRED_A), GT_A, r"pred values must be class ids in 0\.\.3"),
        (PRED_A - 1, GT_A, r"pred values must be class ids"),
        (PRED_A.astype(np.float32), GT_A, "integer class-id map"),
        (PRED_A, np.where(GT_A == 1, 7, GT_A).astype(np.uint8), r"gt values must be class ids .* got \[7\]"),
        (PRED_A[0], GT_A[0], "2-D"),
    ],
)
def test_bad_input_raises(definition, pred, gt, message):
    acc = SemanticAccumulator(CLASSES, definition=definition)
    with pytest.raises(ValueError, match=message):
        acc.add("x", pred, gt)
    assert acc.rows == []


def test_bad_construction_and_empty_mean():
    with pytest.raises(ValueError, match="unknown semantic metric definition"):
        SemanticAccumulator(CLASSES, definition="miou")
    with pytest.raises(ValueError, match="is a class id"):
        SemanticAccumulator(CLASSES, ignore_index=2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        SemanticAccumulator(("only",))
    with pytest.raises(ValueError, match="unique"):
        SemanticAccumulator(("a", "a"))
    with pytest.raises(ValueError, match="no images"):
        SemanticAccumulator(CLASSES).mean()
