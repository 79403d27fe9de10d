"""The ``instances`` task: per-object decoding with one encoder pass per image, its loss and a tiny run."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.backbones import build_backbone
from bench.config import BackboneConfig, CocoDataConfig, ConfigError, DataConfig, TrainConfig
from bench.contracts.dataset import DATASETS
from bench.data.batches import batch_prompts
from bench.runs.results import METRICS_FILE
from bench.runs.runner import execute_run
from bench.runs.sweep import run_configs
from bench.tasks import build_task
from bench.tasks.base import EvalSettings
from datasets.coco import write_fixture
from reports.report import build_report
from tests.tiny_runs import single_run, sweep

COUNTS = (1, 3, 0, 2)
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    write_fixture(root, counts=COUNTS)
    return root


def _coco_args(root: Path) -> tuple[str, ...]:
    return ("datasets=[coco]", f"data.coco.root={root}", "methods=[lora]", "train.batch_size=2")


def _task_and_items(tmp_path: Path, root: Path, split: str = "test"):
    run = single_run(sweep(tmp_path, *_coco_args(root)))
    data = DATASETS.get("coco")(split, DataConfig(cache_dir=str(tmp_path / "c"), coco=CocoDataConfig(root=str(root))))
    task = build_task(data.info, run)
    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig(name="tiny_sam")).eval()
    return task, task.dataset(data, backbone, run.seed, train=split == "train"), backbone


class _Counter:
    def __init__(self) -> None:
        self.images = 0

    def __call__(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.images += args[0].shape[0]


def test_batched_objects_match_one_image_at_a_time_and_encode_each_image_once(tmp_path, fixture_root):
    task, items, backbone = _task_and_items(tmp_path, fixture_root)
    picked = [items[i] for i in (0, 1, 2)]  # 1, 3 and 0 objects
    assert [len(it["category"]) for it in picked] == [1, 3, 0]
    counter = _Counter()
    backbone.patch_embedding()[1].register_forward_hook(counter)
    encoder = lambda x: backbone.encode(x)  # noqa: E731
    cpu = torch.device("cpu")
    batch = task.collate(picked)
    assert batch["owner"].tolist() == [0, 1, 1, 1] and batch["valid"].tolist() == [True] * 3
    settings = EvalSettings(batch_size=4, desc="test", precision="fp32", channels_last=False, resolution="original")
    together = task.object_logits(backbone, encoder, batch, True, cpu, settings)
    assert counter.images == 3  # one patch embedding per image, not per object
    alone = [task.object_logits(backbone, encoder, task.collate([it]), True, cpu, settings) for it in picked]
    alone_t = torch.cat(alone)
    assert together.shape == alone_t.shape == (4, 1, 32, 32)
    delta = (together - alone_t).abs().max().item()
    log.info("max |dlogits| batched vs single = %.3e", delta)
    # same float ops, different batch shapes: BLAS may block the matmuls differently (fp32 rounding ~1e-6)
    torch.testing.assert_close(together, alone_t, atol=1e-5, rtol=0)
    # and each object really gets its own prompt: the three objects of image 1 differ
    assert (together[1] - together[2]).abs().max() > 1e-3


def _parts(backbone) -> SimpleNamespace:
    return SimpleNamespace(student=backbone, student_encoder=lambda x: backbone.encode(x), distiller=None, teacher=None)


def test_zero_object_batch_gives_a_finite_zero_loss_that_backpropagates(tmp_path, fixture_root):
    task, items, backbone = _task_and_items(tmp_path, fixture_root, "train")
    backbone.train()
    batch = task.collate([items[2], items[2]])  # the image without objects, twice
    assert len(batch["owner"]) == 0 and batch["target"].shape == (0, 64, 64)
    cfg = TrainConfig(channels_last=False)
    terms, student, teacher = task.loss_terms(_parts(backbone), batch, True, torch.device("cpu"), cfg)
    assert teacher is None and student.logits.shape[0] == 0
    assert torch.isfinite(terms["seg"]) and terms["seg"].item() == 0.0
    terms["seg"].backward()
    grads = [p.grad for p in backbone.image_encoder.parameters() if p.requires_grad]
    assert grads and all(g is not None and bool((g == 0).all()) for g in grads)
    # a batch with objects gives a positive loss reaching the encoder
    backbone.zero_grad()
    batch = task.collate([items[1], items[2]])
    terms, student, _ = task.loss_terms(_parts(backbone), batch, False, torch.device("cpu"), cfg)
    assert student.embedding.shape[0] == 3 and terms["seg"].item() > 0
    terms["seg"].backward()
    assert any(p.grad.abs().sum() > 0 for p in backbone.image_encoder.parameters() if p.grad is not None)


def test_training_prompts_are_seeded_per_object_and_epoch(tmp_path, fixture_root):
    task, items, _ = _task_and_items(tmp_path, fixture_root, "train")
    a = items[1]
    b = items[1]
    torch.testing.assert_close(a["points"], b["points"], atol=0, rtol=0)  # same (seed, epoch, index, k)
    items.epoch = 1
    c = items[1]
    assert not torch.equal(a["points"], c["points"])  # another epoch, other points
    assert not torch.equal(a["points"][0], a["points"][1])  # objects draw their own


def test_tiny_instances_run_scores_every_object(tmp_path, fixture_root):
    run = single_run(sweep(tmp_path, *_coco_args(fixture_root), "train.epochs=1"))
    record = execute_run(run, tmp_path / "runs")
    run_dir = next(p.parent for p in (tmp_path / "runs").rglob(METRICS_FILE))
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    assert record["task"] == metrics["task"] == "instances"
    assert metrics["selection"]["reported_epoch"] == 1  # it trained
    assert metrics["classes"] == ["bar", "square"]
    clean = metrics["metrics_by_definition"]["clean"]
    assert {"iou", "dice", "miou", "iou_bar", "iou_square"} <= set(clean)
    assert 0 <= clean["iou"] <= 1 and len(metrics["metrics_by_definition"]) > 1
    assert clean["miou"] == pytest.approx((clean["iou_bar"] + clean["iou_square"]) / 2, abs=1e-12)
    with open(run_dir / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(COUNTS) == metrics["num_test_images"]
    assert {r["name"] for r in rows} == {"test_000#0", "test_001#0", "test_001#1", "test_001#2"} | {
        "test_003#0",
        "test_003#1",
    }
    assert {r["category"] for r in rows} == {"bar", "square"} and rows[0]["image"] == "test_000"
    log.info("tiny run iou=%.4f train_seconds=%s", clean["iou"], metrics["train_seconds"])


def test_promptless_protocol_refuses_instances(tmp_path, fixture_root):
    run = single_run(sweep(tmp_path, *_coco_args(fixture_root), "protocol=convlora"))
    data = DATASETS.get("coco")("test", run.data)
    with pytest.raises(ConfigError, match="promptless decoding"):
        build_task(data.info, run)
    with pytest.raises(ConfigError, match="promptless"):
        execute_run(run, tmp_path / "runs")


def test_prompts_are_the_objects_own(tmp_path, fixture_root):
    task, items, _ = _task_and_items(tmp_path, fixture_root)
    batch = task.collate([items[1], items[3]])
    prompts = batch_prompts(batch, True)
    assert prompts.boxes.shape == (5, 4) and batch["target"].shape == (5, 64, 64)
    for j in range(5):  # each box encloses its own object's input-frame target
        ys, xs = torch.nonzero(batch["target"][j], as_tuple=True)
        x0, y0, x1, y1 = prompts.boxes[j].tolist()
        assert x0 <= xs.min() + 1 and y0 <= ys.min() + 1 and x1 >= xs.max() - 1 and y1 >= ys.max() - 1


def test_an_instances_report_has_the_per_category_table(tmp_path, fixture_root):
    cfg = sweep(tmp_path, *_coco_args(fixture_root), "train.epochs=1", "seeds=[0,1]")
    for run in run_configs(cfg):
        execute_run(run, cfg.runs_dir)
    text = build_report(cfg)
    assert "coco mIoU" in text  # the headline names the mean over categories
    section = text[text.index("#### coco: per-class IoU") :]
    header = next(line for line in section.splitlines() if line.startswith("| method"))
    assert header == "| method | coco IoU(bar) | coco IoU(square) |"
    records = [json.loads(p.read_text()) for p in sorted(Path(cfg.runs_dir).rglob(METRICS_FILE))]
    values = [100 * r["metrics_by_definition"]["clean"]["iou_bar"] for r in records]
    assert len(values) == 2
    row = next(line for line in section.splitlines() if line.startswith("| lora"))
    assert row.split("|")[2].strip().strip("*").startswith(f"{np.mean(values):.1f} ±")
