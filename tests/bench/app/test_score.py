"""``run_benchmark.py score``: predictions made elsewhere, scored under a protocol's definitions."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from bench.app.cli import main
from bench.app.score import cmd_score
from bench.config import ConfigError
from bench.eval.metrics_convlora import convlora_scores
from bench.eval.metrics_infosam import infosam_scores


def _write(tmp_path, n=3, png=False):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    rng = np.random.default_rng(1)
    truth = {}
    for i in range(n):
        h, w = 30 + 4 * i, 41
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[5 : 20 + i, 8:30] = 1
        logits = np.where(mask == 1, 2.0, -3.0) + rng.normal(0, 1.5, (h, w))
        if png:
            Image.fromarray(np.rint(255 / (1 + np.exp(-logits))).astype(np.uint8)).save(pred / f"im{i}.png")
        else:
            np.save(pred / f"im{i}.npy", logits.astype(np.float32))
        Image.fromarray(mask * 255).save(gt / f"im{i}.png")
        truth[f"im{i}"] = (logits.astype(np.float32).astype(np.float64), mask)
    return pred, gt, truth


def test_score_writes_one_row_per_image_under_each_protocol(tmp_path):
    pred, gt, truth = _write(tmp_path)
    out = tmp_path / "infosam.csv"
    text = cmd_score(["protocol=infosam", f"pred={pred}", f"gt={gt}", f"out={out}"])
    rows = list(csv.DictReader(out.open()))
    assert [r["name"] for r in rows] == ["im0", "im1", "im2"]
    assert list(rows[0])[:3] == ["name", "sm", "em_adp"]
    for row in rows:
        expected = infosam_scores(*truth[row["name"]])
        for key, value in expected.items():
            assert float(row[key]) == pytest.approx(value, rel=1e-12)
            assert float(row[f"infosam.{key}"]) == pytest.approx(value, rel=1e-12)
    mean_sm = np.mean([infosam_scores(*truth[k])["sm"] for k in truth])
    assert f"sm {100 * mean_sm:.2f}" in text and "protocol infosam" in text
    clean = tmp_path / "clean.csv"
    cmd_score(["protocol=clean", f"pred={pred}", f"gt={gt}", f"out={clean}"])
    clean_rows = list(csv.DictReader(clean.open()))
    assert all(r["sm"] == r["clean.sm"] != r["infosam.sm"] for r in clean_rows)


def test_score_under_the_convlora_protocol_uses_its_definitions_and_names_the_clean_stand_ins(tmp_path):
    pred, gt, truth = _write(tmp_path)
    out = tmp_path / "convlora.csv"
    text = cmd_score(["protocol=convlora", f"pred={pred}", f"gt={gt}", f"out={out}"])
    rows = list(csv.DictReader(out.open()))
    own = convlora_scores(*truth["im0"])
    assert {"sm", "em_mean", "wfm", "mae", "iou", "ber"} <= set(own)
    for row in rows:
        for key, value in convlora_scores(*truth[row["name"]]).items():
            assert float(row[key]) == pytest.approx(value, rel=1e-12)
            assert float(row[f"convlora.{key}"]) == pytest.approx(value, rel=1e-12)
    stand_ins = [k for k in rows[0] if k != "name" and "." not in k and k not in own]
    assert stand_ins and all(rows[0][k] == rows[0][f"clean.{k}"] for k in stand_ins)
    assert f"convlora definitions; clean definitions for {', '.join(stand_ins)}, which it does not define" in text


def test_png_probabilities_score_like_their_logits(tmp_path):
    pred, gt, _ = _write(tmp_path, png=True)
    text = cmd_score(["protocol=clean", f"pred={pred}", f"gt={gt}"])
    assert text.startswith("3 images")


def test_score_errors_name_the_files(tmp_path, capsys):
    pred, gt, _ = _write(tmp_path)
    (pred / "im2.npy").rename(pred / "other.npy")
    unpaired = r"no prediction for 1 mask\(s\): im2; 1 prediction\(s\) without a mask: other"
    with pytest.raises(ConfigError, match=unpaired):
        cmd_score([f"pred={pred}", f"gt={gt}"])
    (pred / "other.npy").rename(pred / "im2.npy")
    np.save(pred / "im1.npy", np.zeros((5, 5), dtype=np.float32))
    with pytest.raises(ConfigError, match="im1.npy: size"):
        cmd_score([f"pred={pred}", f"gt={gt}"])
    np.save(pred / "im1.npy", np.zeros((34, 41), dtype=np.int64))
    with pytest.raises(ConfigError, match="float array of logits"):
        cmd_score([f"pred={pred}", f"gt={gt}"])
    with pytest.raises(ConfigError, match="unknown protocol"):
        cmd_score(["protocol=paper", f"pred={pred}", f"gt={gt}"])
    with pytest.raises(ConfigError, match="usage: score"):
        cmd_score([f"pred={pred}"])
    assert main(["score", f"pred={tmp_path / 'nowhere'}", f"gt={gt}"]) != 0
    assert "not a directory" in capsys.readouterr().err
