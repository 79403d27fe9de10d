"""Tests for bench/train/losses.py (golden values of the structure loss) and bench/data/prompts.py +
bench/data/batches.py prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.backbones import build_backbone
from bench.config import BackboneConfig, DataConfig, SynthConfig
from bench.contracts.dataset import DATASETS
from bench.data.batches import PromptedDataset
from bench.data.prompts import EmptyMaskError, jitter_box, mask_box, sample_points, stable_seed, to_input_frame
from bench.train.losses import boundary_weight, box_mean, structure_loss


# ----------------------------------------------------------------------------- structure loss, in numpy
def _np_avgpool31(t: np.ndarray) -> np.ndarray:
    """31x31 mean with zero padding counted in the denominator (torch's count_include_pad=True)."""
    h, w = t.shape
    padded = np.zeros((h + 30, w + 30))
    padded[15 : 15 + h, 15 : 15 + w] = t
    out = np.empty((h, w))
    for y in range(h):
        for x in range(w):
            out[y, x] = padded[y : y + 31, x : x + 31].sum() / 961.0
    return out


def _np_structure_loss(logits: np.ndarray, target: np.ndarray, variant: str) -> float:
    """(B, H, W) float64 arrays → the F3Net structure loss, written out independently."""
    bce_all = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
    per_image = []
    for x, t, bce in zip(logits, target, bce_all):
        w = 1 + 5 * np.abs(_np_avgpool31(t) - t)
        wbce = (w * bce).sum() / w.sum() if variant == "weighted" else bce_all.mean()
        p = 1 / (1 + np.exp(-x))
        inter = (p * t * w).sum()
        union = ((p + t) * w).sum()
        wiou = 1 - (inter + 1) / (union - inter + 1)
        per_image.append(wbce + wiou)
    return float(np.mean(per_image))


def _case_4x4():
    target = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1], [0, 0, 0, 0]], dtype=np.float64)
    logits = np.array(
        [[-2.0, -1.0, 0.5, -3.0], [-0.5, 2.0, 1.5, -1.0], [0.0, 3.0, -0.5, 1.0], [-1.5, 0.25, -2.5, -4.0]]
    )
    return logits[None], target[None]


def test_boundary_weight_4x4_by_hand():
    _, target = _case_4x4()
    w = boundary_weight(torch.tensor(target[:, None], dtype=torch.float32))[0, 0].numpy()
    # a 31x31 window covers the whole 4x4 image from every pixel: avg = 5 / 961 everywhere
    avg = 5 / 961
    expected = np.where(target[0] == 1, 1 + 5 * (1 - avg), 1 + 5 * avg)
    np.testing.assert_allclose(w, expected, rtol=1e-6)


@pytest.mark.parametrize("k", [3, 31])
def test_box_mean_equals_square_avg_pool(k):
    x = (torch.rand(2, 1, 45, 70, generator=torch.Generator().manual_seed(k)) > 0.6).float()
    expected = torch.nn.functional.avg_pool2d(x, kernel_size=k, stride=1, padding=k // 2)
    torch.testing.assert_close(box_mean(x, k), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", ["weighted", "unweighted_bce"])
def test_structure_loss_4x4_matches_numpy(variant):
    logits, target = _case_4x4()
    got = structure_loss(
        torch.tensor(logits[:, None], dtype=torch.float32), torch.tensor(target[:, None], dtype=torch.float32), variant
    )
    assert got.shape == ()
    assert float(got) == pytest.approx(_np_structure_loss(logits, target, variant), rel=1e-5)


@pytest.mark.parametrize("variant", ["weighted", "unweighted_bce"])
def test_structure_loss_batch_of_larger_masks_matches_numpy(variant):
    rng = np.random.default_rng(0)
    target = np.zeros((3, 40, 36))
    target[0, 5:20, 8:30] = 1
    target[1, 30:38, 2:10] = 1  # near the border: padding enters the average
    target[2] = rng.random((40, 36)) > 0.7
    logits = rng.normal(0, 2, target.shape)
    got = structure_loss(
        torch.tensor(logits[:, None], dtype=torch.float32), torch.tensor(target[:, None], dtype=torch.float32), variant
    )
    assert float(got) == pytest.approx(_np_structure_loss(logits, target, variant), rel=1e-5)


def test_structure_loss_by_hand_for_zero_logits():
    # logits 0: BCE = ln 2 at every pixel whatever the weights; p = 0.5
    _, target = _case_4x4()
    w = np.where(target[0] == 1, 1 + 5 * (1 - 5 / 961), 1 + 5 * 5 / 961)
    inter = 0.5 * (w * target[0]).sum()
    union = ((0.5 + target[0]) * w).sum()
    expected = np.log(2) + 1 - (inter + 1) / (union - inter + 1)
    got = structure_loss(torch.zeros(1, 1, 4, 4), torch.tensor(target[:, None], dtype=torch.float32))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_variants_differ_when_weights_are_not_uniform():
    logits, target = _case_4x4()
    lt, tt = torch.tensor(logits[:, None], dtype=torch.float32), torch.tensor(target[:, None], dtype=torch.float32)
    a, b = structure_loss(lt, tt, "weighted"), structure_loss(lt, tt, "unweighted_bce")
    assert abs(float(a) - float(b)) > 1e-3


def test_variants_agree_when_weights_are_uniform():
    # an all-background target has weight 1 everywhere
    lt = torch.tensor(_case_4x4()[0][:, None], dtype=torch.float32)
    zeros = torch.zeros_like(lt)
    assert float(structure_loss(lt, zeros, "weighted")) == pytest.approx(
        float(structure_loss(lt, zeros, "unweighted_bce"))
    )


def test_structure_loss_is_lower_for_a_better_prediction():
    _, target = _case_4x4()
    tt = torch.tensor(target[:, None], dtype=torch.float32)
    good, bad = 8 * (2 * tt - 1), -8 * (2 * tt - 1)
    assert float(structure_loss(good, tt)) < 0.05 < 1.0 < float(structure_loss(bad, tt))


def test_unknown_variant_raises():
    with pytest.raises(ValueError, match="no_such_variant"):
        structure_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), "no_such_variant")


# ----------------------------------------------------------------------------- prompt sampling
def _mask() -> np.ndarray:
    m = np.zeros((20, 30), np.uint8)
    m[2:5, 20:26] = 1  # wide and off-diagonal: swapped x/y would land outside the image or the mask
    m[4, 27] = 1
    return m


def test_mask_box_is_tight_xyxy():
    box = mask_box(_mask())
    assert box.dtype == np.float32
    assert box.tolist() == [20, 2, 27, 4]


def test_jitter_box_bounds_and_ordering():
    rng = np.random.default_rng(0)
    box = np.array([1.0, 2.0, 28.0, 17.0], np.float32)
    moved = 0
    for _ in range(300):
        out = jitter_box(box, 6.0, (20, 30), rng)
        x0, y0, x1, y1 = out
        assert 0 <= x0 <= x1 <= 29 and 0 <= y0 <= y1 <= 19
        moved += not np.array_equal(out, box)
    assert moved == 300


def test_jitter_box_noise_is_bounded_by_jitter():
    rng = np.random.default_rng(1)
    box = np.array([40.0, 40.0, 60.0, 60.0], np.float32)  # far from the borders: no clipping
    deltas = np.stack([jitter_box(box, 3.0, (100, 100), rng) - box for _ in range(300)])
    assert np.abs(deltas).max() <= 3.0 + 1e-5
    assert np.abs(deltas).max() > 2.5  # and really uses the range


def test_zero_jitter_is_identity_and_copies():
    box = np.array([3.0, 4.0, 10.0, 12.0], np.float32)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    out = jitter_box(box, 0.0, (20, 30), rng)
    assert np.array_equal(out, box) and out is not box
    assert rng.bit_generator.state == state  # no random draw consumed


def test_sample_points_labels_and_locations():
    mask = _mask()
    rng = np.random.default_rng(0)
    coords, labels = sample_points(mask, 3, 4, rng)
    assert coords.shape == (7, 2) and coords.dtype == np.float32
    assert labels.tolist() == [1, 1, 1, 0, 0, 0, 0] and labels.dtype == np.int64
    xs, ys = coords[:, 0].astype(int), coords[:, 1].astype(int)
    assert np.all(xs < 30) and np.all(ys < 20)
    assert np.all(mask[ys[:3], xs[:3]] == 1)  # (x, y) order: mask[y, x]
    assert np.all(mask[ys[3:], xs[3:]] == 0)


def test_sample_points_many_draws_stay_inside():
    mask = _mask()
    rng = np.random.default_rng(2)
    for _ in range(50):
        coords, labels = sample_points(mask, 2, 3, rng)
        c = coords.astype(int)
        assert np.all(mask[c[:, 1], c[:, 0]] == labels)


def test_sample_points_with_replacement_when_the_pool_is_small():
    mask = np.zeros((10, 10), np.uint8)
    mask[7, 3] = 1
    coords, labels = sample_points(mask, 3, 0, np.random.default_rng(0))
    assert coords.tolist() == [[3, 7]] * 3 and labels.tolist() == [1, 1, 1]


def test_empty_mask_raises():
    empty = np.zeros((8, 8), np.uint8)
    with pytest.raises(EmptyMaskError):
        mask_box(empty)
    with pytest.raises(EmptyMaskError):
        sample_points(empty, 1, 0, np.random.default_rng(0))
    coords, labels = sample_points(empty, 0, 2, np.random.default_rng(0))  # background only is fine
    assert labels.tolist() == [0, 0] and coords.shape == (2, 2)


def test_to_input_frame_scales_x_and_y_separately():
    original, resized = (100, 200), (50, 64)  # y scale 0.5, x scale 0.32
    pts = np.array([[200.0, 100.0], [50.0, 10.0]], np.float32)
    np.testing.assert_allclose(to_input_frame(pts, original, resized), [[64, 50], [16, 5]], rtol=1e-6)
    box = np.array([10.0, 20.0, 150.0, 80.0], np.float32)
    np.testing.assert_allclose(to_input_frame(box, original, resized), [3.2, 10, 48, 40], rtol=1e-6)
    assert to_input_frame(box, original, resized).shape == (4,)


def test_stable_seed_is_fixed_and_distinguishes_parts():
    assert stable_seed("eval", "img_0") == stable_seed("eval", "img_0")
    assert stable_seed(0, 1, 2) != stable_seed(0, 2, 1)
    assert stable_seed(1, 23) != stable_seed(12, 3)
    assert 0 <= stable_seed("x") < 2**63
    # a constant: must not change between versions or machines (eval prompts depend on it)
    assert (
        stable_seed("eval", "synth_polyp_test_0000")
        == int.from_bytes(__import__("hashlib").sha256("eval\x1fsynth_polyp_test_0000".encode()).digest()[:8], "little")
        >> 1
    )


# ----------------------------------------------------------------------------- PromptedDataset prompts
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    cfg = DataConfig(
        cache_dir=str(tmp_path_factory.mktemp("cache")),
        synth=SynthConfig(train_size=4, test_size=4, min_side=64, max_side=96),
    )
    backbone = build_backbone(BackboneConfig(name="tiny_sam"))
    return DATASETS.get("synth_polyp")("test", cfg), backbone


def _prompts(data: PromptedDataset, index: int) -> tuple:
    item = data[index]
    return item["box"].numpy(), item["points"].numpy(), item["labels"].numpy()


def _same(a: tuple, b: tuple) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_eval_prompts_do_not_depend_on_seed_or_epoch(tiny_data):
    ds, backbone = tiny_data
    a = PromptedDataset(ds, backbone, seed=0, train=False, box_jitter=200.0, num_pos=2, num_neg=3)
    b = PromptedDataset(ds, backbone, seed=7, train=False, box_jitter=200.0, num_pos=2, num_neg=3)
    b.epoch = 3
    for i in range(len(ds)):
        assert _same(_prompts(a, i), _prompts(b, i))
    assert "gt" in a[0] and a[0]["gt"].shape == tuple(a[0]["size"].tolist())


def test_eval_box_without_jitter_is_the_gt_box_in_the_input_frame(tiny_data):
    ds, backbone = tiny_data
    data = PromptedDataset(ds, backbone, seed=0, train=False)
    item, sample = data[1], ds[1]
    resized = backbone.resized_shape(*sample["mask"].shape)
    np.testing.assert_allclose(
        item["box"].numpy(), to_input_frame(mask_box(sample["mask"]), sample["mask"].shape, resized)
    )
    assert item["labels"].tolist() == [1]
    assert item["image"].shape == (3, 64, 64) and item["target"].shape == (64, 64)


def test_train_prompts_are_reproducible_and_vary_with_epoch_and_seed(tiny_data):
    ds, backbone = tiny_data
    kw = dict(train=True, box_jitter=200.0, num_pos=2)
    a, b, other_seed = (PromptedDataset(ds, backbone, seed=s, **kw) for s in (0, 0, 1))
    epoch0 = [_prompts(a, i) for i in range(len(ds))]
    assert all(_same(p, _prompts(b, i)) for i, p in enumerate(epoch0))  # same (seed, epoch, index)
    assert all(not _same(p, _prompts(other_seed, i)) for i, p in enumerate(epoch0))
    a.epoch = 1
    epoch1 = [_prompts(a, i) for i in range(len(ds))]
    assert all(not _same(p, q) for p, q in zip(epoch0, epoch1))
    a.epoch = 0
    assert all(_same(p, _prompts(a, i)) for i, p in enumerate(epoch0))  # not a stateful stream
    assert "gt" not in a[0]
