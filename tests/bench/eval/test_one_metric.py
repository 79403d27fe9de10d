"""A validation candidate is scored by its one selection metric (bench.eval.evaluate.OneMetric): the same value
the full scoring gives, at a fraction of the cost."""

from __future__ import annotations

import numpy as np
import pytest

from bench.eval.evaluate import OneMetric, Scorer
from bench.eval.metrics import METRICS, score_image, score_one


def _images(n: int = 4):
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        logits = rng.normal(0, 3, (40, 56))
        gt = (rng.random((40, 56)) > 0.6 + 0.05 * i).astype(np.uint8)
        out.append((f"img{i}", logits, gt))
    return out


@pytest.mark.parametrize("key", [k for k in METRICS if k != "em_max"])
def test_score_one_equals_the_full_scoring(key):
    for _, logits, gt in _images():
        prob = 1 / (1 + np.exp(-logits))
        assert score_one(key, prob, gt) == score_image(prob, gt)[key]


def test_em_max_has_no_per_image_form():
    with pytest.raises(KeyError, match="em_max"):
        score_one("em_max", np.full((4, 4), 0.5), np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize(
    "definition, metric, where",
    [("clean", "sm", "clean"), ("convlora", "iou", "convlora"), ("infosam", "ber", "clean")],
)
def test_one_metric_gives_the_value_the_selector_reads_from_the_full_scores(definition, metric, where):
    full, one = Scorer(), OneMetric(definition, metric)
    for name, logits, gt in _images():
        full.add(name, logits, gt)
        one.add(name, logits, gt)
    # infosam's definitions have no BER: the selector falls back to the clean one, and so does OneMetric
    assert one.means() == {where: {metric: full.means()[where][metric]}}
    key = metric if where == "clean" else f"{where}.{metric}"
    assert [r[key] for r in one.rows()] == [r[key] for r in full.rows()]
