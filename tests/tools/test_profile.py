"""Tests for the step profile command (``python -m tools.profile``)."""

from __future__ import annotations

import re

import pytest

from tools import profile

SMALL = [
    "backbone=tiny_sam",
    "data.synth.train_size=4",
    "data.synth.test_size=2",
    "data.synth.min_side=64",
    "data.synth.max_side=96",
    "profile.repeat=1",
    "profile.top=5",
]


def test_profile_splits_the_step_into_the_trainer_phases(capsys):
    assert profile.main(SMALL) == 0
    out = capsys.readouterr().out
    sections = re.split(r"\n(?=adapter\S*: step)", out.split("\nTop operators")[0])
    adapter, infosam = sections[1], sections[2]
    assert adapter.startswith("adapter: step") and infosam.startswith("adapter+infosam: step")
    for phase in ("student.encoder", "student.decoder", "loss.structure", "step.backward", "step.optimizer"):
        assert phase in adapter and phase in infosam
    assert "teacher" not in adapter and "loss.distiller" not in adapter
    assert "teacher" in infosam and "loss.distiller" in infosam
    for section in (adapter, infosam):  # the phases and "(other)" add up to the step
        shares = [float(s) for s in re.findall(r"ms\s+(-?[\d.]+) %", section)]
        assert sum(shares) == pytest.approx(100, abs=0.5)
    assert "adapter+infosam step / adapter step:" in out


def test_unknown_profile_option_is_an_error():
    with pytest.raises(SystemExit, match="profile.repeats"):
        profile.main(["profile.repeats=2"])
