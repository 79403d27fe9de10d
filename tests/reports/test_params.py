"""The trainable-parameter table of ``run_benchmark.py params``."""

from __future__ import annotations

import numpy as np
import pytest

import methods  # noqa: F401  (registration)
from bench.backbones import build_backbone
from bench.config import load_config
from methods.peft._base import PEFT_METHODS
from reports.params import params_table, write_params


def test_params_table_covers_every_method_with_consistent_counts(tmp_path):
    cfg = load_config(["sweep=smoke", f"runs_dir={tmp_path}"])
    table = params_table(cfg)
    assert list(table.index) == PEFT_METHODS.names()
    model = build_backbone(cfg.backbone)
    total = sum(p.numel() for p in model.parameters())
    decoder = sum(p.numel() for p in model.mask_decoder.parameters())
    assert table.attrs["total_M"] == pytest.approx(total / 1e6)
    assert table.loc["zero_shot"].tolist() == [0, 0, 0, 0]
    assert table.loc["decoder_only", "params_M"] == pytest.approx(decoder / 1e6)
    assert table.loc["decoder_only", "params_wo_decoder_M"] == 0
    np.testing.assert_allclose(table["ratio_pct"], 100 * table["params_M"] * 1e6 / total)
    adapter = table.loc["adapter", "params_wo_decoder_M"] * 1e6
    # tiny_sam: width 32, blocks 2-3 adapted, bottleneck 8: two adapters and two LayerNorms per block
    assert adapter == pytest.approx(2 * (2 * (32 * 8 + 8 + 8 * 32 + 32) + 2 * 64))


def test_params_command_writes_csv_and_latex(tmp_path):
    cfg = load_config(["sweep=smoke", f"runs_dir={tmp_path}"])
    text = write_params(cfg)
    assert "adapter" in text
    latex = (tmp_path / "_reports" / "params_tiny_sam.tex").read_text()
    assert "\\toprule" in latex and "Params (M)" in latex and "decoder\\_only" in latex
    assert (tmp_path / "_reports" / "params_tiny_sam.csv").read_text().startswith("method,")
