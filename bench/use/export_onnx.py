"""``export run=RUN format=onnx out=DIR``: a fine-tuned run as two ONNX graphs, checked with onnxruntime.

* ``DIR/image_encoder.onnx``: ``image`` (1, 3, S, S), the *preprocessed* model input (resized, normalised
  and padded as :meth:`bench.contracts.backbone.Backbone.preprocess_image` makes it: normalisation is
  **not** inside the graph) → ``image_embeddings`` (1, C, h, w), plus ``feature_<k>`` outputs for the
  encoder features the decoder reads (a method's ``feature_blocks``; SAM2's high-resolution maps,
  ``feature_m1`` / ``feature_m2``);
* ``DIR/mask_decoder.onnx``: the prompt encoder + mask decoder in segment-anything's ONNX layout
  (``SamOnnxModel``): ``image_embeddings``, ``point_coords`` (1, N, 2) in the model-input frame,
  ``point_labels`` (1, N) (1 foreground, 0 background, 2 / 3 a box's top-left / bottom-right corner,
  -1 padding), ``mask_input`` (1, 1, 4h, 4w), ``has_mask_input`` (1,), N dynamic; the encoder's
  ``feature_<k>`` outputs follow as inputs when there are any → ``low_res_masks`` (1, 1, 4h, 4w) logits
  of the single-mask output, ``iou_predictions`` (1, 1). As with SAM's own graph, prompts without a box
  need one padding point (0, 0) with label -1 (SAM's prompt encoder adds it itself); SAM2 (``sam2_hiera_*``,
  ``tiny_sam2``) pads every prompt, a box too, so its prompts always end with that point.

Foldable PEFT (LoRA, SSF) is folded first; other methods' modules are traced as they are (the graph holds
the adapter). Opset 17 (LayerNorm is one op). Both graphs are run with onnxruntime on CPU against the
suite's PyTorch model before the command returns; over the tolerance both files are deleted.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.backbones import Backbone, Prompts
from bench.config import ConfigError

OPSET = 17
# ORT fuses and re-orders float32 reductions (attention softmax, GEMMs, LayerNorm, erf GELU) differently from
# torch's kernels: over a dozen blocks that is ~1e2 ulp of the output (float32 ulp 1.2e-7), i.e. ~1e-5 of
# the output's scale; a wrong op or a missing adapter moves the outputs by O(1e-2) or more. 1e-4 of
# max(1, max |output|) sits between the two.
RELATIVE_TOLERANCE = 1e-4
ENCODER_FILE, DECODER_FILE, META_FILE = "image_encoder.onnx", "mask_decoder.onnx", "onnx_export.json"


def feature_name(key: int) -> str:
    """ONNX name of the encoder feature under dict key ``key`` (negative keys: ``m`` for the minus sign)."""
    return f"feature_{key}".replace("-", "m")


class EncoderGraph(nn.Module):
    """image (1, 3, S, S) → image embedding and the features in ``keys`` (what the decoder reads)."""

    def __init__(self, model: Backbone, blocks: tuple[int, ...], keys: tuple[int, ...]) -> None:
        super().__init__()
        self.model, self.blocks, self.keys = model, blocks, keys

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z, feats = self.model.encode(image, blocks=self.blocks)
        return (z, *(feats[k] for k in self.keys))


class DecoderGraph(nn.Module):
    """SAM's ONNX decoder layout over the suite's :meth:`Backbone.decode` (see the module docstring).

    The points are embedded as the official prompt encoders do (pixel centre, normalised to the input,
    random Fourier features, one learned embedding per label, ``not_a_point_embed`` for -1); a box given as
    two corner points labelled 2 and 3 gets the same tokens as a box, and the decoder's attention does not
    depend on the order of the prompt tokens.
    """

    def __init__(self, model: Backbone, keys: tuple[int, ...]) -> None:
        super().__init__()
        self.model, self.keys = model, keys

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pe = self.model.prompt_encoder
        h, w = pe.input_image_size
        xy = (coords + 0.5) / torch.tensor([w, h], dtype=coords.dtype)
        emb = pe.pe_layer._pe_encoding(xy)
        lab = labels.unsqueeze(-1)
        emb = torch.where(lab == -1, pe.not_a_point_embed.weight, emb)
        for i, point_embedding in enumerate(pe.point_embeddings):
            emb = emb + point_embedding.weight * (lab == i).to(emb.dtype)
        return emb

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        *features: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pe = self.model.prompt_encoder
        sparse = self.embed_points(point_coords, point_labels)
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = has_mask_input * pe.mask_downscaling(mask_input) + (1 - has_mask_input) * no_mask
        dense = dense.expand(-1, -1, *image_embeddings.shape[-2:])
        self.model.encode_prompts = lambda prompts: (sparse, dense)  # the copy decodes these embeddings
        try:
            out = self.model.decode(image_embeddings, Prompts(), dict(zip(self.keys, features)))
        finally:
            del self.model.encode_prompts
        return out.logits, out.iou


def _suite_outputs(model: Backbone, x: torch.Tensor, blocks: tuple[int, ...]):
    with torch.no_grad():
        return model.encode(x, blocks=blocks)


def probe_prompts(size: int, family: str = "sam") -> list[tuple[Prompts, np.ndarray, np.ndarray]]:
    """Check prompts in the suite's form and in SAM's ONNX form: one point (+ the padding point), and a box
    + a background point (N = 2 and N = 3, so the dynamic N is exercised). SAM2's prompt encoder pads
    every prompt, a box included (SAM2ImagePredictor passes boxes as points): ``family="sam2"`` appends the
    padding point to the box prompt too (N = 4)."""
    point = torch.tensor([[[0.45, 0.55]]]) * size
    box = torch.tensor([[0.1, 0.2, 0.7, 0.9]]) * size
    bg = torch.tensor([[[0.85, 0.15]]]) * size
    one = Prompts(points=point, labels=torch.ones(1, 1))
    boxed = Prompts(boxes=box, points=bg, labels=torch.zeros(1, 1))
    pad = np.zeros((1, 1, 2), np.float32)
    prompts = [
        (one, np.concatenate([point.numpy(), pad], 1), np.array([[1, -1]], np.float32)),
        (boxed, np.concatenate([bg.numpy(), box.reshape(1, 2, 2).numpy()], 1), np.array([[0, 2, 3]], np.float32)),
    ]
    if family == "sam2":
        prompts[1] = (boxed, np.concatenate([prompts[1][1], pad], 1), np.array([[0, 2, 3, -1]], np.float32))
    return prompts


def export_onnx(model: Backbone, blocks: tuple[int, ...], out: str | Path) -> str:
    """Write the two graphs of ``model`` (PEFT already folded where it folds) under ``out``; returns the report.

    Args:
        model: The fine-tuned backbone (eval mode). A copy is traced; ``model`` is not changed.
        blocks: The encoder blocks the method's decoder side reads (``PeftMethod.feature_blocks``).
        out: The output directory.
    """
    import copy

    import onnxruntime as ort

    if getattr(model, "task_head", None) is not None:
        raise ConfigError(
            "export format=onnx: multi-class (semantic / instances) runs are not supported (the graphs are SAM's "
            "prompted single-mask decoder); use format=pt"
        )
    model = copy.deepcopy(model).eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = model.img_size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    z, feats = _suite_outputs(model, x, blocks)
    keys = tuple(sorted(feats))  # the requested blocks, and what the family's decoder reads (SAM2: high-res)
    names = [feature_name(k) for k in keys]
    enc_path, dec_path = out / ENCODER_FILE, out / DECODER_FILE
    h, w = z.shape[-2:]
    mask_input = torch.zeros(1, 1, 4 * h, 4 * w)
    feature_args = tuple(feats[k] for k in keys)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: S is fixed
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)  # chosen
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        torch.onnx.export(
            EncoderGraph(model, blocks, keys),
            (x,),
            str(enc_path),
            input_names=["image"],
            output_names=["image_embeddings", *names],
            opset_version=OPSET,
            dynamo=False,
        )
        coords = torch.tensor([[[10.0, 10.0], [20.0, 20.0]]])
        dec_args = (z, coords, torch.tensor([[1.0, -1.0]]), mask_input, torch.zeros(1), *feature_args)
        torch.onnx.export(
            DecoderGraph(model, keys),
            dec_args,
            str(dec_path),
            input_names=["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", *names],
            output_names=["low_res_masks", "iou_predictions"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            opset_version=OPSET,
            dynamo=False,
        )
    try:
        enc_diff, enc_tol, dec_diff, dec_tol = _check(ort, model, x, z, feats, keys, names, enc_path, dec_path)
    except BaseException:
        enc_path.unlink(missing_ok=True)
        dec_path.unlink(missing_ok=True)
        raise
    meta = {
        "img_size": size,
        "normalization": model.normalization,
        "normalization_inside": False,
        "opset": OPSET,
        "features": names,
        "max_abs_diff": {"image_encoder": enc_diff, "mask_decoder": dec_diff},
        "tolerance": {"image_encoder": enc_tol, "mask_decoder": dec_tol},
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return (
        f"{out}\n  {ENCODER_FILE}: preprocessed image (1, 3, {size}, {size}) -> image_embeddings, normalisation "
        f"({model.normalization}) outside the graph; max |diff| vs PyTorch (onnxruntime CPU): {enc_diff:.3g} "
        f"(tolerance {enc_tol:.2g})\n  {DECODER_FILE}: SAM's ONNX decoder inputs, N points dynamic; max |logits "
        f"diff| vs the run's model: {dec_diff:.3g} (tolerance {dec_tol:.2g})\n  opset {OPSET}"
    )


def decoder_feed(
    embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray, features: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The decoder graph's inputs for one prompt (no mask prompt): the embedding (1, C, h, w), the points (1, N, 2)
    with their labels (1, N), and the encoder features the decoder reads, by input name."""
    h, w = embedding.shape[-2:]
    return {
        "image_embeddings": embedding,
        "point_coords": coords.astype(np.float32),
        "point_labels": labels,
        "mask_input": np.zeros((1, 1, 4 * h, 4 * w), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        **features,
    }


def _tolerance(reference: torch.Tensor) -> float:
    return RELATIVE_TOLERANCE * max(1.0, float(reference.abs().max()))


def _check(ort, model, x, z, feats, keys, names, enc_path, dec_path) -> tuple[float, float, float, float]:
    """Run both graphs with onnxruntime (CPU) against ``model``; raise ConfigError over the tolerance."""
    opts = ort.SessionOptions()
    enc = ort.InferenceSession(str(enc_path), opts, providers=["CPUExecutionProvider"])
    got = enc.run(None, {"image": x.numpy()})
    want = [z, *(feats[k] for k in keys)]
    enc_diff = max(float(np.abs(g - t.numpy()).max()) for g, t in zip(got, want))
    enc_tol = max(_tolerance(t) for t in want)
    dec = ort.InferenceSession(str(dec_path), opts, providers=["CPUExecutionProvider"])
    dec_diff, dec_tol = 0.0, 0.0
    for prompts, coords, labels in probe_prompts(model.img_size, model.family):
        inputs = decoder_feed(z.numpy(), coords, labels, {n: feats[k].numpy() for n, k in zip(names, keys)})
        logits = dec.run(["low_res_masks"], inputs)[0]
        with torch.no_grad():
            ref = model.decode(z, prompts, dict(feats)).logits
        dec_diff = max(dec_diff, float(np.abs(logits - ref.numpy()).max()))
        dec_tol = max(dec_tol, _tolerance(ref))
    print(f"onnx check: image_encoder max |diff| {enc_diff:.3g}, mask_decoder max |diff| {dec_diff:.3g}")
    if enc_diff > enc_tol or dec_diff > dec_tol:
        raise ConfigError(
            f"export format=onnx: onnxruntime differs from the run's model (encoder {enc_diff:.2e} > {enc_tol:.1e} "
            f"or decoder {dec_diff:.2e} > {dec_tol:.1e}); nothing written"
        )
    return enc_diff, enc_tol, dec_diff, dec_tol
