"""Finished tiny_sam runs shared by the export tests (one short sweep per session)."""

from __future__ import annotations

import pytest

from .test_predict_export import _finish_runs


@pytest.fixture(scope="session")
def tiny_runs_lora_adapter(tmp_path_factory):
    """{"lora": run_dir, "adapter": run_dir}: tiny_sam runs of one step, their trained tensors perturbed."""
    return _finish_runs(tmp_path_factory.mktemp("export_runs"), "tiny_sam", "lora,adapter")
