"""``export format=onnx``: the two graphs run with onnxruntime (CPU) and give the suite's logits.

Tiny SAM with LoRA (folded) and with adapters (traced as modules), LiteMedSAM with its bundled weights and
a perturbed LoRA, the tiny SAM2; one point (+ SAM's padding point) and a box + a point, so the decoder's
number of points N changes between calls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bench.app.cli import main
from bench.backbones import Prompts, build_backbone
from bench.config import BackboneConfig, ConfigError
from bench.contracts.peft import build_peft
from bench.use.export import export_as, merge
from bench.use.export_onnx import DECODER_FILE, ENCODER_FILE, decoder_feed, export_onnx, feature_name, probe_prompts
from bench.use.trained import load_trained

TOL = 1e-4  # relative to max(1, max |output|), the export's own bound (see bench/use/export_onnx.py)


def _sessions(folder: Path):
    cpu = ["CPUExecutionProvider"]
    enc = ort.InferenceSession(str(folder / ENCODER_FILE), providers=cpu)
    return enc, ort.InferenceSession(str(folder / DECODER_FILE), providers=cpu)


def _ort_matches(model, folder: Path, blocks: tuple[int, ...] = ()) -> float:
    """Both graphs against ``model`` on a preprocessed random image; returns the largest logit difference."""
    enc, dec = _sessions(folder)
    image = np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    x = torch.from_numpy(model.preprocess_image(image))[None]
    with torch.no_grad():
        z, feats = model.encode(x, blocks=blocks)
    outs = enc.run(None, {"image": x.numpy()})
    assert float(np.abs(outs[0] - z.numpy()).max()) <= TOL * max(1.0, float(z.abs().max()))
    names = [o.name for o in enc.get_outputs()][1:]
    assert names == [feature_name(k) for k in sorted(feats)]
    worst = 0.0
    for prompts, coords, labels in probe_prompts(model.img_size, model.family):
        inputs = decoder_feed(outs[0], coords, labels, dict(zip(names, outs[1:])))
        got = dec.run(["low_res_masks"], inputs)[0]
        with torch.no_grad():
            want = model.decode(z, prompts, feats).logits.numpy()
        diff = float(np.abs(got - want).max())  # end to end: ORT encoder → ORT decoder
        assert diff <= TOL * max(1.0, float(np.abs(want).max())), (labels, diff)
        worst = max(worst, diff)
    return worst


@pytest.mark.parametrize("method", ["lora", "adapter"])
def test_tiny_sam_run_exports_two_graphs_that_match(tiny_runs_lora_adapter, tmp_path, method, capsys):
    run = tiny_runs_lora_adapter[method]
    assert main(["export", f"run={run}", "format=onnx", f"out={tmp_path / 'onnx'}"]) == 0
    printed = capsys.readouterr().out
    assert "image_encoder max |diff|" in printed and "normalisation (sam) outside the graph" in printed
    trained = load_trained(run)
    diff = _ort_matches(trained.model, tmp_path / "onnx")
    print(f"tiny_sam {method}: ORT end-to-end max |logits diff| {diff:.3g}")
    base = build_backbone(BackboneConfig(name="tiny_sam"))
    assert _diff_from_untuned(base, tmp_path / "onnx") > 100 * TOL  # the fine-tuning is in there


def _diff_from_untuned(base, folder: Path) -> float:
    """Largest difference of the exported decoder from the *untuned* model (must be large)."""
    enc, dec = _sessions(folder)
    x = torch.randn(1, 3, base.img_size, base.img_size, generator=torch.Generator().manual_seed(1))
    z = enc.run(None, {"image": x.numpy()})[0]
    prompts, coords, labels = probe_prompts(base.img_size)[1]
    h, w = z.shape[-2:]
    got = dec.run(
        ["low_res_masks"],
        {
            "image_embeddings": z,
            "point_coords": coords.astype(np.float32),
            "point_labels": labels,
            "mask_input": np.zeros((1, 1, 4 * h, 4 * w), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
        },
    )[0]
    with torch.no_grad():
        want = base.decode(base.encode(x)[0], prompts).logits.numpy()
    return float(np.abs(got - want).max())


def _perturbed_lora(name: str, **cfg):
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(name=name, **cfg))
    build_peft("lora", {}).apply(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora" in n:
                p.normal_(0, 0.01)
    return model.eval()


def test_litemedsam_bundled_weights_with_lora(tmp_path):
    model = _perturbed_lora("litemedsam", img_size=128)
    text = export_onnx(merge(model), (), tmp_path / "lite")
    assert "normalisation (minmax) outside the graph" in text
    print(text)
    print(f"litemedsam lora: ORT end-to-end max |logits diff| {_ort_matches(model, tmp_path / 'lite'):.3g}")


def test_tiny_sam2_exports_with_its_high_resolution_features(tmp_path):
    model = _perturbed_lora("tiny_sam2")
    export_onnx(merge(model), (), tmp_path / "sam2")
    _ort_matches(model, tmp_path / "sam2")


def test_bad_format_and_multi_class_runs_are_refused(tiny_runs_lora_adapter, tmp_path, capsys):
    code = main(["export", f"run={tiny_runs_lora_adapter['lora']}", "format=tflite", f"out={tmp_path / 'x'}"])
    assert code == 2 and "format='tflite' is not one of pt, onnx, hf" in capsys.readouterr().err
    trained = load_trained(tiny_runs_lora_adapter["lora"])
    with pytest.raises(ConfigError, match="format=onnx:.*multi-class"):
        model = trained.model
        model.task_head = torch.nn.Identity()
        export_as(trained, tmp_path / "y", "onnx")
    assert not (tmp_path / "y").exists()


def test_mask_input_is_embedded_as_the_official_prompt_encoder_does(tiny_runs_lora_adapter, tmp_path):
    trained = load_trained(tiny_runs_lora_adapter["lora"])
    model = trained.model
    export_as(trained, tmp_path / "onnx", "onnx")
    enc, dec = _sessions(tmp_path / "onnx")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    z = enc.run(None, {"image": x.numpy()})[0]
    mask = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    point, label = torch.tensor([[[20.0, 30.0]]]), torch.ones(1, 1)
    got = dec.run(
        ["low_res_masks"],
        {
            "image_embeddings": z,
            "point_coords": np.array([[[20.0, 30.0], [0.0, 0.0]]], np.float32),
            "point_labels": np.array([[1.0, -1.0]], np.float32),
            "mask_input": mask.numpy(),
            "has_mask_input": np.ones(1, np.float32),
        },
    )[0]
    with torch.no_grad():
        embedded = model.prompt_encoder(points=(point, label), boxes=None, masks=mask)
        model.encode_prompts = lambda prompts: embedded
        want = model.decode(torch.from_numpy(z), Prompts()).logits.numpy()
    assert float(np.abs(got - want).max()) <= TOL * max(1.0, float(np.abs(want).max()))
