"""The demo sweep's page as a browser shows it: headless Chromium (Debian ``chromium``) takes a screenshot,
which must not be blank and must show the figures (coloured pixels), not only text. Slow (16 real runs);
skipped where Chromium is absent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.runs.launcher import launch
from bench.runs.sweep import load_config
from reports.report import build_report

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
WINDOW = (1280, 2000)


def screenshot(page: Path, png: Path, profile: Path) -> None:
    """Render ``page`` with headless Chromium into ``png`` (offline: no network, sync or updates)."""
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (apt-get install chromium)")
def test_demo_page_renders_in_chromium(tmp_path):
    cfg = load_config(
        [
            "sweep=demo",
            "report.name=demo",
            "backbone.name=tiny_sam",
            "backbone.img_size=64",
            "train.epochs=1",
            "train.precision=fp32",
            "launcher=inline",
            f"runs_dir={tmp_path / 'runs'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"launcher.folder={tmp_path / 'submitit'}",
            "data.synth.train_size=4",
            "data.synth.val_size=4",
            "data.synth.test_size=4",
            "data.synth.min_side=64",
            "data.synth.max_side=80",
        ]
    )
    assert not any(o.error for o in launch(cfg))
    build_report(cfg, out_dir=tmp_path / "report")
    page = tmp_path / "report" / "demo.html"
    png = tmp_path / "demo.png"
    screenshot(page, png, tmp_path / "chromium-profile")
    with Image.open(png) as im:
        assert im.size == WINDOW
        rgb = np.asarray(im.convert("RGB")).astype(int)
    ink = (rgb.min(axis=2) < 200).mean()  # anything not white-ish: text, tables, figures
    colour = (rgb.max(axis=2) - rgb.min(axis=2) > 60).mean()  # saturated pixels: the figures' images
    assert ink > 0.05, f"screenshot nearly blank ({ink:.3f} of pixels drawn)"
    assert colour > 0.02, f"no figure visible ({colour:.3f} of pixels coloured)"
