"""A multi-class dataset is refused with a clear error until its heads and losses exist (not a traceback)."""

from pathlib import Path

import pytest

from bench.config import ConfigError, RunConfig
from bench.runs.runner import execute_run
from datasets.coco import write_fixture


def test_instances_dataset_refused_clearly(tmp_path: Path) -> None:
    write_fixture(tmp_path / "coco")
    run = RunConfig(method="decoder_only", dataset="coco")
    run.data.coco.root = str(tmp_path / "coco")
    run.backbone.name = "tiny_sam"
    run.backbone.random_init = True
    with pytest.raises(ConfigError, match="instances dataset"):
        execute_run(run, tmp_path / "runs")
