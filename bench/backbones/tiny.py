"""Tiny random backbones of each family (official classes, narrow and shallow) for fast CPU tests.

* ``tiny_sam``: SAM ViT, 64-px input, 4 blocks, 8×8×32 embedding;
* ``tiny_sam2``: SAM 2.1 Hiera (the ``sam2.1_hiera_t`` config narrowed), 128-px input, 6 blocks in 4
  stages (three of them pooling, dimension-changing blocks), 8×8×32 embedding;
* ``tiny_tinyvit``: MobileSAM-layout TinyViT, 128-px input, 5 blocks, 8×8×256 embedding (TinyViT's neck
  is 256 wide).

Weights are drawn from a fixed seed, so every process builds the same "pretrained" model.
"""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer

from bench.config import BackboneConfig, ConfigError
from bench.contracts.backbone import Backbone, register_backbone
from bench.contracts.checkpoints import attach_weights

from .sam import SamViT


def tiny_vit_encoder(embed_dim: int, depth: int, global_attn_indexes: tuple[int, ...]) -> ImageEncoderViT:
    """tiny_sam's kind of official ViT encoder (64-px input, 8-px patches, 32-wide output) at a given width
    and depth; tests build wider/deeper teachers with it."""
    return ImageEncoderViT(
        img_size=64,
        patch_size=8,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=2,
        mlp_ratio=2.0,
        out_chans=32,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=4,
        global_attn_indexes=global_attn_indexes,
    )


def tiny_sam_decoder(num_multimask_outputs: int = 3) -> MaskDecoder:
    """The official MaskDecoder of ``tiny_sam`` (32 wide, 2-layer two-way transformer), default init."""
    return MaskDecoder(
        num_multimask_outputs=num_multimask_outputs,
        transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2),
        transformer_dim=32,
        iou_head_depth=3,
        iou_head_hidden_dim=32,
    )


@register_backbone("tiny_sam", SamViT.family)
def build_tiny_sam(cfg: BackboneConfig) -> Backbone:
    if cfg.img_size not in (None, 64):
        raise ConfigError("backbone.img_size must be 64 for tiny_sam")
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the same "pretrained" random weights in every process
        encoder = tiny_vit_encoder(embed_dim=32, depth=4, global_attn_indexes=(1, 3))
        prompt_encoder = PromptEncoder(
            embed_dim=32, image_embedding_size=(8, 8), input_image_size=(64, 64), mask_in_chans=4
        )
        decoder = tiny_sam_decoder()
        # Official init leaves some layers at exactly zero; perturb so tests see non-trivial outputs.
        for p in decoder.parameters():
            p.data.add_(0.02 * torch.randn_like(p))
    model = SamViT(encoder, prompt_encoder, decoder, img_size=64)
    model.name = cfg.name
    if cfg.checkpoint:
        attach_weights(model, cfg.checkpoint)
    else:
        model.weights_id = "tiny_sam_seed0"
    return model


def _perturb(module: torch.nn.Module) -> None:
    """Official inits leave some layers at exactly zero; perturb so tests see non-trivial outputs."""
    for p in module.parameters():
        p.data.add_(0.02 * torch.randn_like(p))


def _finish(model: Backbone, cfg: BackboneConfig, seed_id: str) -> Backbone:
    model.name = cfg.name
    if cfg.checkpoint:
        attach_weights(model, cfg.checkpoint)
    else:
        model.weights_id = seed_id
    return model


TINY_SAM2_OVERRIDES = {
    "image_encoder": {
        "trunk": {
            "embed_dim": 16,
            "num_heads": 1,
            "stages": [1, 2, 2, 1],
            "global_att_blocks": [4],
            "window_spec": [4, 4, 4, 2],
            "window_pos_embed_bkg_spatial_size": [4, 4],
        },
        "neck": {"d_model": 32, "backbone_channel_list": [128, 64, 32, 16]},
    },
    "memory_attention": {
        "d_model": 32,
        "num_layers": 1,
        "layer": {
            "d_model": 32,
            "dim_feedforward": 64,
            "self_attention": {"embedding_dim": 32, "feat_sizes": [8, 8]},
            "cross_attention": {"embedding_dim": 32, "feat_sizes": [8, 8], "kv_in_dim": 16},
        },
    },
    "memory_encoder": {
        "out_dim": 16,
        "in_dim": 32,
        "position_encoding": {"num_pos_feats": 16},
        "mask_downsampler": {"embed_dim": 32},
        "fuser": {"layer": {"dim": 32}},
    },
}


def tiny_sam2_model() -> torch.nn.Module:
    """The random ``SAM2Base`` behind ``tiny_sam2`` (also what its checkpoints are saved from)."""
    from omegaconf import OmegaConf

    from .sam2 import instantiate_sam2, sam2_model_config

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = instantiate_sam2(OmegaConf.merge(sam2_model_config("sam2_hiera_t"), TINY_SAM2_OVERRIDES), 128)
        _perturb(model.sam_mask_decoder)
        _perturb(model.image_encoder.trunk)  # Hiera's position embeddings start at zero
    return model


@register_backbone("tiny_sam2", "sam2")
def build_tiny_sam2(cfg: BackboneConfig) -> Backbone:
    if cfg.img_size not in (None, 128):
        raise ConfigError("backbone.img_size must be 128 for tiny_sam2")
    from .sam2 import wrap_sam2

    model = tiny_sam2_model()
    backbone = wrap_sam2(model, cfg.name, 128, official=tiny_sam2_model)
    backbone.weights_id = "tiny_sam2_seed0"
    if cfg.checkpoint:  # the official sam2.1 layout, as sam2_hiera_*
        attach_weights(backbone, cfg.checkpoint, key="model", into=model)
    return backbone


def tiny_tinyvit_model() -> Backbone:
    """The random MobileSAM-layout model behind ``tiny_tinyvit`` (its 320-wide last stage keeps TinyViT's
    stride-1 last patch merging, which the original code ties to that width)."""
    from .mobilesam import build_mobilesam_model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_mobilesam_model(128, [32, 64, 96, 320], [1, 1, 2, 1], [1, 2, 3, 10], num_classes=10)
        _perturb(model.mask_decoder)
    return model


@register_backbone("tiny_tinyvit", "tinyvit")
def build_tiny_tinyvit(cfg: BackboneConfig) -> Backbone:
    if cfg.img_size not in (None, 128):
        raise ConfigError("backbone.img_size must be 128 for tiny_tinyvit")
    return _finish(tiny_tinyvit_model(), cfg, "tiny_tinyvit_seed0")
