"""``predict`` and ``export`` of finished runs beyond one binary mask: label maps of a semantic run, the export of
its queries head loaded back into the suite, one mask per object from a COCO JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.app.cli import main
from bench.config import ConfigError
from bench.data.labels import voc_palette
from bench.use.export import export_trained, logits, probe_images, rebuild
from bench.use.predict import PredictOptions, predict
from bench.use.trained import load_trained
from datasets.coco import write_fixture as write_coco

SHAPES = ("background", "disc", "square", "triangle", "ring")


def _finish(tmp_path: Path, method: str, *extra: str, noise: float = 0.05) -> Path:
    """A finished tiny_sam run on synth_shapes; its trained tensors perturbed (one step barely moves them)."""
    runs = tmp_path / "runs"
    args = ["sweep=smoke", "backbone=tiny_sam", f"methods=[{method}]", f"runs_dir={runs}", "launcher=inline"]
    args += ["datasets=[synth_shapes]", "train.epochs=1", "train.max_steps_per_epoch=1"]
    args += [f"data.cache_dir={tmp_path / 'cache'}", "data.synth.train_size=4", "data.synth.test_size=2", *extra]
    assert main(args) == 0
    (run_dir,) = sorted(runs.glob("synth_shapes__*"))
    ckpt = run_dir / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    g = torch.Generator().manual_seed(1)
    for value in state["parts"]["student"].values():
        value.add_(noise * torch.randn(value.shape, generator=g))
    torch.save(state, ckpt)
    return run_dir


@pytest.fixture(scope="module")
def queries_run(tmp_path_factory):
    return _finish(tmp_path_factory.mktemp("q"), "lora", "task.head=queries", "task.queries=4")


def _images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem, size in (("wide", (40, 70)), ("tall", (66, 30))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{stem}.png")
    return folder


def test_a_semantic_run_reloads_with_its_head_and_its_queries(queries_run):
    trained = load_trained(queries_run)
    assert trained.task is not None and trained.task.info.classes == SHAPES
    assert trained.model.mask_decoder.mask_tokens.weight.shape[0] == 4
    assert trained.model.task_head.class_embed.out_features == len(SHAPES) + 1
    state = torch.load(queries_run / "checkpoint.pt", weights_only=True)["parts"]["student"]
    assert torch.equal(
        dict(trained.model.named_parameters())["task_head.class_embed.weight"], state["task_head.class_embed.weight"]
    )


def test_predict_writes_palette_label_maps_at_each_images_size(queries_run, tmp_path):
    images = _images(tmp_path)
    out = tmp_path / "out"
    written = predict(PredictOptions(run=str(queries_run), images=str(images), out=str(out), logits=True))
    assert sorted(p.name for p in written) == ["tall.png", "wide.png"]
    assert (out / "classes.txt").read_text().split() == list(SHAPES)
    for stem, size in (("wide", (40, 70)), ("tall", (66, 30))):
        im = Image.open(out / f"{stem}.png")
        assert im.mode == "P" and im.size == size[::-1]
        assert np.array_equal(np.asarray(im.getpalette()[:15]).reshape(5, 3), voc_palette(5))
        scores = np.load(out / f"{stem}.npy")
        assert scores.shape == (len(SHAPES), *size)
        assert np.array_equal(np.asarray(im), scores.argmax(0))  # the label map is the scores' argmax


def test_predict_refuses_prompts_for_a_semantic_run(queries_run, tmp_path):
    images = _images(tmp_path)
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\nwide,1,1,9,9\ntall,1,1,9,9\n")
    with pytest.raises(ConfigError, match="semantic run: none"):
        predict(
            PredictOptions(
                run=str(queries_run), images=str(images), out=str(tmp_path / "o"), boxes=str(tmp_path / "boxes.csv")
            )
        )


def test_export_of_a_queries_run_loads_back_with_the_same_logits(queries_run, tmp_path):
    trained = load_trained(queries_run)
    report = export_trained(trained, tmp_path / "model.pt")
    assert "samfit-peft" not in report or "lora" in report
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert payload["format"] == "samfit-peft" and payload["task_record"]["classes"] == list(SHAPES)
    model = rebuild(tmp_path / "model.pt")
    x, boxes = probe_images(model.img_size)
    want = logits(trained.model, x, boxes)
    assert want.shape == (2, 4 * 32 * 32 + 4 * (len(SHAPES) + 1))  # every query's mask and class logits
    # the same modules and tensors in the same order: identical
    assert torch.equal(logits(model, x, boxes), want)


def test_coco_json_prompts_one_mask_per_object_with_one_encoder_pass_per_image(tmp_path, monkeypatch):
    root = tmp_path / "coco"
    write_coco(root)
    runs = tmp_path / "runs"
    args = ["sweep=smoke", "backbone=tiny_sam", "methods=[zero_shot]", f"runs_dir={runs}", "launcher=inline"]
    args += [
        "train.epochs=1",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.synth.train_size=4",
        "data.synth.test_size=2",
    ]
    assert main(args) == 0
    (run_dir,) = sorted(runs.glob("synth_polyp__*"))
    data = json.loads((root / "annotations" / "train.json").read_text())
    trained = load_trained(run_dir)
    calls = []
    encoder = type(trained.model).encode

    def counting(self, x, *a, **k):
        calls.append(x.shape[0])
        return encoder(self, x, *a, **k)

    monkeypatch.setattr(type(trained.model), "encode", counting)
    monkeypatch.setattr("bench.use.predict.load_trained", lambda *a: trained)
    out = tmp_path / "out"
    written = predict(
        PredictOptions(
            run=str(run_dir), images=str(root / "images"), out=str(out), coco=str(root / "annotations" / "train.json")
        )
    )
    per_image = {}
    for ann in data["annotations"]:
        if not ann.get("iscrowd"):
            per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
    assert len(written) == sum(per_image.values())
    assert calls == [1] * len(per_image)  # once per image with objects, however many objects it holds
    for path in written:
        assert set(np.unique(np.asarray(Image.open(path)))) <= {0, 255}
