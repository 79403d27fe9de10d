"""The semantic task's model side: promptless queries decoding, the two heads and their losses.

References are restated in the tests: Mask2Former's classification term from its definition (cross-entropy over
K + 1 classes, matched queries take their class, the others "no object" with weight 0.1), SAMed's CE + Dice in
numpy, AutoMM's semantic inference as an explicit sum over queries.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

from bench.backbones import Prompts, build_backbone
from bench.config import BackboneConfig
from bench.tasks.heads import PerClassHead, QueriesHead, set_mask_tokens
from bench.tasks.losses import AUTOMM_WEIGHTS, ce_dice_terms, m2f_terms, per_class_targets
from bench.tasks.semantic import resize_labels


@pytest.fixture
def tiny():
    return build_backbone(BackboneConfig(name="tiny_sam"))


def _images(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_one_query_is_the_promptless_single_mask_output(tiny):
    z, _ = tiny.encode(_images())
    set_mask_tokens(tiny, 1)
    single = tiny.decode(z, Prompts())
    queries = tiny.decode_queries(z)
    assert queries.masks.shape == (2, 1, 32, 32) and queries.tokens.shape == (2, 1, 32)
    # the same modules on the same values; the hypernetwork MLP sees (B, 1, C) instead of (B, C): float32 rounding
    torch.testing.assert_close(queries.masks, single.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(queries.tokens[:, 0], single.mask_token, rtol=0, atol=1e-6)


@torch.no_grad()
def test_copied_queries_start_identical_and_share_hypernetwork_zero(tiny):
    """AutoMM copies mask token 0 into every query and keeps hypernetwork MLP 0: at initialisation the queries are
    interchangeable (only the loss's matching and the class head tell them apart)."""
    z, _ = tiny.encode(_images())
    token0 = tiny.mask_decoder.mask_tokens.weight[0].clone()
    mlp0 = tiny.mask_decoder.output_hypernetworks_mlps[0]
    set_mask_tokens(tiny, 5)
    dec = tiny.mask_decoder
    assert dec.mask_tokens.weight.shape[0] == 5 and list(dec.output_hypernetworks_mlps) == [mlp0]
    assert all(torch.equal(dec.mask_tokens.weight[q], token0) for q in range(5))
    out = tiny.decode_queries(z)
    assert out.masks.shape == (2, 5, 32, 32)
    for q in range(1, 5):  # equal tokens attend equally; the sums run in another order per position
        torch.testing.assert_close(out.masks[:, q], out.masks[:, 0], rtol=0, atol=1e-5)


def test_set_mask_tokens_refuses_zero(tiny):
    from bench.config import ConfigError

    with pytest.raises(ConfigError, match="at least one"):
        set_mask_tokens(tiny, 0)


def test_queries_head_scores_are_mask2formers_semantic_inference():
    g = torch.Generator().manual_seed(1)
    masks, cls = torch.randn(2, 4, 5, 6, generator=g), torch.randn(2, 4, 4, generator=g)  # Q=4, K=3
    scores = QueriesHead(8, 3).scores(masks, cls)
    probs = cls.softmax(-1)
    expected = torch.zeros(2, 3, 5, 6)
    for q in range(4):  # sum over queries of p(class | q) * sigmoid(mask_q), the "no object" column dropped
        expected += probs[:, q, :3, None, None] * masks[:, q, None].sigmoid()
    torch.testing.assert_close(scores, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(PerClassHead(3).scores(masks[:, :3]), masks[:, :3].softmax(1))


def test_per_class_targets_drop_the_ignore_value():
    target = torch.tensor([[[0, 2, 255], [2, 2, 0]], [[255, 255, 255], [255, 255, 255]]])
    masks, classes = per_class_targets(target, 255)
    assert classes[0].tolist() == [0, 2] and masks[0].shape == (2, 2, 3)
    assert masks[0][1].tolist() == [[0, 1, 0], [1, 1, 0]]
    assert classes[1].numel() == 0 and masks[1].shape == (0, 2, 3)  # all ignored: no target


def _clear_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three queries, K = 3: query 0 predicts class 2 on its region, query 2 class 0 on the rest, query 1 nothing;
    masks at ±12 so that the matching cannot hesitate."""
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[0, 4:12, 4:12] = 2
    masks = torch.full((1, 3, 16, 16), -12.0)
    masks[0, 0][target[0] == 2] = 12.0
    masks[0, 2][target[0] == 0] = 12.0
    cls = torch.tensor([[[0.1, 0.2, 3.0, -1.0], [0.0, 0.0, 0.0, 2.0], [2.5, 0.3, -0.4, 0.0]]])
    return masks, cls, target


def test_m2f_classification_term_equals_its_definition():
    masks, cls, target = _clear_case()
    terms = m2f_terms(masks, cls, target, 255, weighted=False, seed=0)
    assert set(terms) == {"m2f_ce", "m2f_mask", "m2f_dice"}
    # matching: query 0 -> class 2, query 2 -> class 0, query 1 -> no object (index K = 3), weight 0.1
    weight = torch.tensor([1.0, 1.0, 1.0, 0.1])
    expected = F.cross_entropy(cls[0], torch.tensor([2, 3, 0]), weight=weight)
    torch.testing.assert_close(terms["m2f_ce"], expected, rtol=1e-6, atol=1e-7)
    # the mask terms sample points (75 % near the boundary, where bilinear sampling blurs both sides): only finite
    assert all(torch.isfinite(terms[k]) for k in ("m2f_mask", "m2f_dice"))


def test_m2f_terms_are_transformers_loss_and_its_weights():
    g = torch.Generator().manual_seed(3)
    masks, cls = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 4, generator=g)
    target = torch.randint(0, 3, (2, 16, 16), generator=g)
    target[:, :2] = 255
    summed = m2f_terms(masks, cls, target, 255, weighted=False, seed=7)
    weighted = m2f_terms(masks, cls, target, 255, weighted=True, seed=7)
    mask_labels, class_labels = per_class_targets(target, 255)
    torch.manual_seed(7)
    raw = Mask2FormerLoss(Mask2FormerConfig(num_labels=3), dict(AUTOMM_WEIGHTS))(masks, cls, mask_labels, class_labels)
    for ours, theirs in (("m2f_ce", "loss_cross_entropy"), ("m2f_mask", "loss_mask"), ("m2f_dice", "loss_dice")):
        assert torch.equal(summed[ours], raw[theirs])  # the same call with the same draws
        torch.testing.assert_close(weighted[ours], raw[theirs] * AUTOMM_WEIGHTS[theirs], rtol=1e-6, atol=0)
    again = m2f_terms(masks, cls, target, 255, weighted=False, seed=7)
    assert all(torch.equal(summed[k], again[k]) for k in summed)  # seeded: a resumed run draws the same points
    other = m2f_terms(masks, cls, target, 255, weighted=False, seed=8)
    assert not torch.equal(other["m2f_mask"], summed["m2f_mask"])  # the seed decides the sampled points


def test_m2f_terms_leave_the_global_generator_alone():
    masks, cls, target = _clear_case()
    torch.manual_seed(11)
    before = torch.get_rng_state()
    m2f_terms(masks, cls, target, 255, weighted=False, seed=0)
    assert torch.equal(torch.get_rng_state(), before)


def test_ce_dice_equals_sameds_formula_restated_in_numpy():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 6, 7, generator=g)
    target = torch.randint(0, 3, (2, 6, 7), generator=g)
    target[0, 0, :4] = 255
    terms = ce_dice_terms(logits, target, 255)
    x, t = logits.numpy().astype(np.float64), target.numpy()
    valid = t != 255
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    picked = np.take_along_axis(logp, np.where(valid, t, 0)[:, None], 1)[:, 0]
    ce = -picked[valid].mean()
    p = np.exp(logp) * valid[:, None]
    dice = []
    for c in range(3):
        g_c = ((t == c) & valid).astype(np.float64)
        inter = (p[:, c] * g_c).sum()
        dice.append(1 - (2 * inter + 1e-5) / ((p[:, c] ** 2).sum() + (g_c**2).sum() + 1e-5))
    np.testing.assert_allclose(float(terms["ce"]), 0.2 * ce, rtol=1e-5)
    np.testing.assert_allclose(float(terms["dice"]), 0.8 * np.mean(dice), rtol=1e-5)


def test_label_maps_resize_with_nearest_neighbours_and_pad_with_ignore(tiny):
    labels = np.zeros((32, 16), np.uint8)
    labels[:, 8:] = 3
    labels[0, 0] = 255
    out = resize_labels(labels, tiny, 255)  # longest side 32 -> 64: the image fills 64 x 32
    assert out.shape == (64, 64) and out.dtype == np.int64
    assert (out[:, 32:] == 255).all()  # padding is ignored
    assert set(np.unique(out[:, :32]).tolist()) == {0, 3, 255}
    assert (out[:, 16:32] == 3).all() and (out[2:, :16] == 0).all()
