"""``export run=RUN format=hf out=DIR``: a SAM ViT run as a ``transformers.SamModel`` folder.

The folder (``config.json`` + ``model.safetensors``) loads with ``SamModel.from_pretrained(DIR)`` with no
missing or unexpected key. The config is read off the model (widths, depths, heads, windows, the global
attention blocks, the prompt encoder's mask channels), so ``sam_vit_b/l/h`` and ``tiny_sam`` all export.
Only folded weights fit SamModel's layers (``bench.use.export`` checks the method). SamModel takes
``pixel_values`` already normalised and padded to S × S (what ``SamProcessor`` makes): the suite's
preprocessed input is that tensor, and prompts are in the same S-pixel frame.

The Meta → HF key mapping (:func:`hf_state_dict`) is written here from the two models' module names.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from bench.backbones import Backbone, Prompts
from bench.config import ConfigError

# SamModel re-implements the same layers; float32 differences come from other reduction orders only
# (HF's attention adds the rel-pos bias before its softmax as SAM does): ~1e-6 of the logits' scale.
RELATIVE_TOLERANCE = 1e-4

# (Meta pattern, HF replacement), applied in order to each key once the prefix is renamed
_RENAMES = [
    (r"^image_encoder\.", "vision_encoder."),
    (r"^vision_encoder\.blocks\.", "vision_encoder.layers."),
    (r"^vision_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
    (r"\.norm(\d)\.", r".layer_norm\1."),
    (r"^vision_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
    (r"^vision_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
    (r"^vision_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
    (r"^vision_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
    (r"^prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
]
PE_KEY = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"


_MLP = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.(\d+)\.(.*)$")


def hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official ``Sam`` state dict → SamModel's: renamed keys, SAM's ``MLP.layers.i`` as HF's ``proj_in``
    (first), ``layers.i-1`` (middle) and ``proj_out`` (last), and the random Fourier matrix under both of
    SamModel's copies (``shared_image_embedding`` and ``prompt_encoder.shared_embedding``)."""
    last: dict[str, int] = {}
    for key in state:
        m = _MLP.match(key)
        if m:
            last[m.group(1)] = max(last.get(m.group(1), 0), int(m.group(2)))
    out = {}
    for key, value in state.items():
        if key == PE_KEY:
            out["shared_image_embedding.positional_embedding"] = value
            out["prompt_encoder.shared_embedding.positional_embedding"] = value.clone()
            continue
        m = _MLP.match(key)
        if m:
            head, i, rest = m.group(1), int(m.group(2)), m.group(3)
            part = "proj_in" if i == 0 else "proj_out" if i == last[head] else f"layers.{i - 1}"
            out[f"{head}.{part}.{rest}"] = value
            continue
        for pattern, repl in _RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def hf_config(model: Backbone):
    """The ``SamConfig`` of a SAM ViT backbone, read off its modules."""
    from transformers import SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

    enc, pe, dec = model.image_encoder, model.prompt_encoder, model.mask_decoder
    blocks = list(enc.blocks)
    blk = blocks[0]
    patch = int(enc.patch_embed.proj.kernel_size[0])
    out_ch = int(enc.neck[0].out_channels)
    vision = SamVisionConfig(
        hidden_size=int(enc.patch_embed.proj.out_channels),
        output_channels=out_ch,
        num_hidden_layers=len(blocks),
        num_attention_heads=int(blk.attn.num_heads),
        image_size=int(enc.img_size),
        patch_size=patch,
        qkv_bias=blk.attn.qkv.bias is not None,
        mlp_dim=int(blk.mlp.lin1.out_features),
        mlp_ratio=blk.mlp.lin1.out_features / blk.mlp.lin1.in_features,
        use_abs_pos=enc.pos_embed is not None,
        use_rel_pos=bool(blk.attn.use_rel_pos),
        window_size=max(int(b.window_size) for b in blocks),
        global_attn_indexes=[i for i, b in enumerate(blocks) if b.window_size == 0],
        num_pos_feats=out_ch // 2,
        layer_norm_eps=float(blk.norm1.eps),
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=int(pe.embed_dim),
        image_size=int(pe.input_image_size[0]),
        patch_size=patch,
        mask_input_channels=int(pe.mask_downscaling[3].out_channels),
    )
    transformer = dec.transformer
    decoder = SamMaskDecoderConfig(
        hidden_size=int(dec.transformer_dim),
        mlp_dim=int(transformer.layers[0].mlp.lin1.out_features),
        num_hidden_layers=len(transformer.layers),
        num_attention_heads=int(transformer.layers[0].self_attn.num_heads),
        attention_downsample_rate=int(
            transformer.layers[0].cross_attn_token_to_image.embedding_dim
            // transformer.layers[0].cross_attn_token_to_image.internal_dim
        ),
        num_multimask_outputs=int(dec.num_multimask_outputs),
        iou_head_depth=int(dec.iou_prediction_head.num_layers),
        iou_head_hidden_dim=int(dec.iou_prediction_head.layers[0].out_features),
        layer_norm_eps=float(transformer.layers[0].norm1.eps),
    )
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def hf_logits(hf, x: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """SamModel's single-mask low-resolution logits (B, 1, h', w') for the suite's inputs and prompts."""
    kwargs = {}
    if prompts.boxes is not None:
        kwargs["input_boxes"] = prompts.boxes[:, None]
    if prompts.points is not None:
        kwargs["input_points"] = prompts.points[:, None]
        kwargs["input_labels"] = prompts.labels[:, None].long()
    with torch.no_grad():
        out = hf(pixel_values=x, multimask_output=False, **kwargs)
    return out.pred_masks[:, 0]


def export_hf(model: Backbone, out: str | Path) -> str:
    """Write ``model`` (a folded SAM ViT backbone) as a SamModel folder under ``out``; returns the report."""
    import shutil

    from transformers import SamModel

    if model.family != "sam":
        raise ConfigError(
            f"export format=hf: backbone {model.name!r} ({model.family} family) has no transformers SamModel "
            "layout; format=hf takes the SAM ViT backbones (sam_vit_b, sam_vit_l, sam_vit_h, tiny_sam); "
            "use format=onnx or format=pt"
        )
    config = hf_config(model)
    state = hf_state_dict(model.state_dict())
    hf = SamModel(config)
    hf.load_state_dict(state, strict=True)
    out = Path(out)
    hf.save_pretrained(out)
    try:
        loaded, info = SamModel.from_pretrained(out, output_loading_info=True)
        bad = {k: v for k, v in info.items() if v}
        if bad:
            raise ConfigError(f"export format=hf: SamModel.from_pretrained({out}) reports {bad}; nothing written")
        diff, tol = _check(model, loaded.eval())
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return (
        f"{out}\n  transformers SamModel folder (SamModel.from_pretrained loads it strictly); pixel_values: the "
        f"suite's preprocessed, normalised (1, 3, {model.img_size}, {model.img_size}) input\n  max |logits diff| "
        f"vs the run's model: {diff:.3g} (tolerance {tol:.2g})"
    )


def _check(model: Backbone, hf) -> tuple[float, float]:
    x = torch.randn(1, 3, model.img_size, model.img_size, generator=torch.Generator().manual_seed(0))
    s = model.img_size
    probes = [
        Prompts(boxes=torch.tensor([[0.1, 0.2, 0.7, 0.9]]) * s),
        Prompts(points=torch.tensor([[[0.45, 0.55]]]) * s, labels=torch.ones(1, 1)),
    ]
    diff, tol = 0.0, 0.0
    with torch.no_grad():
        z, _ = model.encode(x)
        for prompts in probes:
            want = model.decode(z, prompts).logits
            diff = max(diff, float((hf_logits(hf, x, prompts) - want).abs().max()))
            tol = max(tol, RELATIVE_TOLERANCE * max(1.0, float(want.abs().max())))
    print(f"hf check: max |logits diff| {diff:.3g}")
    if diff > tol:
        raise ConfigError(f"export format=hf: SamModel differs from the run's model by {diff:.2e} > {tol:.1e}")
    return diff, tol
