"""Adding a backbone, a PEFT method, a distiller, a dataset, a protocol or a report figure takes one file.

Each test drops one file into a temporary folder that joins the plugin package's ``__path__`` (as a file in
``bench/backbones/``, ``methods/peft/``, ``methods/distill/``, ``datasets/``, ``protocols/`` or
``reports/figures/`` would be found), asks the
registry to discover it, and shows the entry is listed by ``run_benchmark.py list`` and builds. The registry's
entries are restored afterwards.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pytest
import torch

import bench.app.cli
from bench.backbones import BACKBONES, backbone_family, build_backbone
from bench.config import BackboneConfig, DataConfig
from bench.config.protocols import PROTOCOL_REGISTRY
from bench.contracts.dataset import DATASETS, check_sample, dataset_info
from bench.contracts.distill import DISTILLERS, DistillContext, Features
from bench.contracts.methods import method_options
from bench.contracts.peft import PEFT_METHODS, trainable_parameters
from bench.registry import Registry
from reports.figures import FIGURES

Drop = Callable[[str, str], None]


@pytest.fixture
def drop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``drop(package, source)``: write ``source`` as one module of ``package`` (in a temporary folder)."""
    registries: list[Registry] = [BACKBONES, PEFT_METHODS, DISTILLERS, DATASETS, PROTOCOL_REGISTRY, FIGURES]
    for registry in registries:
        registry.names()  # discovered before the snapshot, so that the restore keeps the real entries
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_meta", dict(registry._meta))
    added: list[str] = []

    def write(package: str, source: str) -> None:
        folder = tmp_path / package.replace(".", "_")
        folder.mkdir()
        (folder / f"one_file_{len(added)}.py").write_text(textwrap.dedent(source))
        module = importlib.import_module(package)
        monkeypatch.setattr(module, "__path__", [*module.__path__, str(folder)])
        added.append(f"{package}.one_file_{len(added)}")
        for registry in registries:
            registry.discover()

    yield write
    for name in added:
        sys.modules.pop(name, None)


@pytest.fixture
def listed(monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
    """The text of ``run_benchmark.py list`` (without counting the sweeps' runs, which takes a while)."""
    monkeypatch.setattr(bench.app.cli, "available_sweeps", lambda: [])
    return lambda: bench.app.cli.cmd_list([])


def line_of(text: str, head: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(head))


def names_on(text: str, head: str) -> list[str]:
    """The comma-separated names of the ``list`` line starting with ``head`` (a trailing note dropped)."""
    return line_of(text, head)[len(head) :].split("(")[0].replace(" ", "").split(",")


def test_one_file_adds_a_backbone(drop, listed):
    assert "tiny_two" not in BACKBONES
    drop(
        "bench.backbones",
        """
        from bench.backbones import register_backbone
        from bench.backbones.tiny import build_tiny_sam

        @register_backbone("tiny_two", "sam")
        def build(cfg):
            return build_tiny_sam(cfg)
        """,
    )
    assert "tiny_two" in names_on(listed(), "backbones:") and backbone_family("tiny_two") == "sam"
    model = build_backbone(BackboneConfig(name="tiny_two"))
    assert model.encode(torch.zeros(1, 3, 64, 64))[0].shape[1] == 32


def test_one_file_adds_a_peft_method(drop, listed):
    drop(
        "methods.peft",
        """
        from dataclasses import dataclass, field

        from bench.contracts.peft import PEFT_METHODS, PeftMethod

        @dataclass
        class Options:
            last: int = field(default=1, metadata={"help": "train the LayerNorms of the last N blocks"})

        @PEFT_METHODS.register("norms_only", mergeable=False)
        class NormsOnly(PeftMethod):
            Options = Options
            train_decoder = False

            def inject(self, backbone):
                names = []
                for i, block in list(enumerate(backbone.encoder_blocks()))[-self.options.last:]:
                    block.norm1.requires_grad_(True)
                    names.append(f"block{i}.norm1")
                return names
        """,
    )
    assert "norms_only" in names_on(listed(), "methods (PEFT):")
    spec, options, _ = method_options("norms_only", {"last": 2}, {})
    model = build_backbone(BackboneConfig(name="tiny_sam"))
    assert spec.peft_cls(options).apply(model) == ["block2.norm1", "block3.norm1"]
    assert trainable_parameters(model) == 2 * 2 * 32  # weight + bias of two LayerNorms of width 32


def test_one_file_adds_a_distiller(drop, listed):
    drop(
        "methods.distill",
        """
        from dataclasses import dataclass

        import torch.nn.functional as F

        from bench.contracts.distill import DISTILLERS, Distiller

        @dataclass
        class Options:
            weight: float = 1.0

        @DISTILLERS.register("embed_l1", feature_matching=True)
        class EmbedL1(Distiller):
            Options = Options

            def forward(self, student, teacher, batch):
                return {"l_embed": self.options.weight * F.l1_loss(student.embedding, teacher.embedding)}
        """,
    )
    assert "embed_l1" in names_on(listed(), "distillers:")
    spec, _, options = method_options("lora+embed_l1", {}, {"weight": 2.0})
    assert (spec.peft, spec.distillers) == ("lora", ("embed_l1",))
    distiller = spec.distiller_cls(options, DistillContext(8, 8))
    s = Features(torch.ones(2, 8, 4, 4), torch.zeros(2, 8), torch.zeros(2, 1, 8, 8), torch.zeros(2, 1))
    t = Features(torch.zeros(2, 8, 4, 4), torch.zeros(2, 8), torch.zeros(2, 1, 8, 8), torch.zeros(2, 1))
    assert float(distiller(s, t, {})["l_embed"]) == pytest.approx(2.0)


def test_one_file_adds_a_dataset(drop, listed):
    drop(
        "datasets",
        """
        import numpy as np

        from bench.contracts.dataset import DatasetInfo, SegmentationDataset, register_dataset

        class Squares(SegmentationDataset):
            info = DatasetInfo(family="squares", metrics=("iou", "dice"))

            def __init__(self, split):
                self.split = split

            def __len__(self):
                return 3

            def __getitem__(self, index):
                mask = np.zeros((16, 16), np.uint8)
                mask[4:12, 4:12] = 1
                image = np.repeat(mask[..., None] * 200, 3, axis=2).astype(np.uint8)
                return {"image": image, "mask": mask, "name": f"sq{index}", "split": self.split}

        @register_dataset("squares", Squares.info)
        def build(split, cfg):
            return Squares(split)
        """,
    )
    assert line_of(listed(), "  squares ").split() == ["squares", "generated"]
    assert dataset_info("squares").family == "squares"
    data = DATASETS.get("squares")("test", DataConfig())
    assert len(data) == 3 and check_sample(data[1], "squares")["name"] == "sq1"


def test_one_file_adds_a_protocol(drop, listed, tmp_path):
    """A protocol file brings a preset and a metric definition of its own: ``list`` shows it, and the same
    run under it is scored and reported by its definition (every run also carries the others)."""
    drop(
        "protocols",
        """
        import numpy as np

        from bench.config.protocols import Protocol, register_protocol

        def strict_iou(logits, gt):  # IoU of the pixels the model is sure of (sigmoid > 0.95)
            pred, gt = logits > np.log(19.0), gt.astype(bool)
            union = (pred | gt).sum()
            return {"iou": float((pred & gt).sum() / union) if union else 1.0}

        register_protocol(
            Protocol(
                name="strict",
                summary="strict IoU, last epoch",
                order=3,
                preset={"eval.select": "last"},
                metrics="strict",
                score=strict_iou,
            )
        )
        """,
    )
    assert line_of(listed(), "protocols:").endswith("; strict = strict IoU, last epoch")
    from bench.runs.runner import execute_run
    from bench.runs.sweep import load_config, run_configs

    def run_under(protocol: str) -> dict:
        args = [
            "sweep=smoke", "backbone.name=tiny_sam", "methods=[zero_shot]", "datasets=[synth_polyp]",
            f"protocol={protocol}", f"runs_dir={tmp_path / protocol}", f"data.cache_dir={tmp_path / 'cache'}",
            "data.synth.train_size=4", "data.synth.val_size=2", "data.synth.test_size=4",
        ]  # fmt: skip
        (run,) = run_configs(load_config(args))
        return run, execute_run(run, tmp_path / protocol)

    clean_run, clean = run_under("clean")
    strict_run, strict = run_under("strict")
    assert (clean_run.eval.select, strict_run.eval.select) == ("val_best", "last")  # the preset
    assert strict["metric_definition"] == "strict" and "strict" in clean["metrics_by_definition"]
    own = strict["metrics_by_definition"]["strict"]["iou"]
    assert strict["metrics"]["iou"] == own != clean["metrics"]["iou"]
    assert strict["metrics"]["dice"] == clean["metrics"]["dice"]  # what it does not define: the clean values


def test_one_file_adds_a_report_figure(drop, tmp_path):
    """A figure file is drawn by ``report`` for the sweep it applies to, after the built-in ones."""
    from bench.runs.sweep import load_config, run_configs
    from reports.report import build_report
    from tests.reports.fake_runs import write_run

    drop(
        "reports.figures",
        """
        from reports.figures import FIGURES
        from reports.figfiles import pyplot, save_figure

        @FIGURES.register("run_count", order=9)
        def run_count(cfg, runs, records, out):
            plt = pyplot()
            fig, ax = plt.subplots()
            ax.bar(["complete", "all"], [len(records), len(runs)])
            return save_figure(fig, out / f"{cfg.sweep}_run_count")
        """,
    )
    cfg = load_config(["sweep=smoke", "report.name=smoke", f"runs_dir={tmp_path / 'runs'}", "methods=[zero_shot]"])
    (run,) = run_configs(cfg)
    write_run(cfg.runs_dir, run, {"sm": 0.5, "em_mean": 0.5, "wfm": 0.5, "mae": 0.1})
    build_report(cfg)
    out = tmp_path / "runs" / "_reports"
    assert (out / "smoke_run_count.png").is_file() and (out / "smoke_run_count.pdf").is_file()
    assert "smoke_run_count.png" in (out / "smoke.html").read_text()
