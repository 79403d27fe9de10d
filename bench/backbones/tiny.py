"""A tiny random SAM (official classes, narrow and shallow) for fast CPU tests: 64-px input, 8×8×32 embedding."""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer

from bench.config import BackboneConfig, ConfigError

from ._base import BACKBONES, Backbone, load_checkpoint, sha256_file
from .sam import SamViT


@BACKBONES.register("tiny_sam")
def build_tiny_sam(cfg: BackboneConfig) -> Backbone:
    if cfg.img_size not in (None, 64):
        raise ConfigError("backbone.img_size must be 64 for tiny_sam")
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the same "pretrained" random weights in every process
        encoder = ImageEncoderViT(
            img_size=64,
            patch_size=8,
            embed_dim=32,
            depth=4,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=32,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=4,
            global_attn_indexes=(1, 3),
        )
        prompt_encoder = PromptEncoder(
            embed_dim=32, image_embedding_size=(8, 8), input_image_size=(64, 64), mask_in_chans=4
        )
        decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2),
            transformer_dim=32,
            iou_head_depth=3,
            iou_head_hidden_dim=32,
        )
        # Official init leaves some layers at exactly zero; perturb so tests see non-trivial outputs.
        for p in decoder.parameters():
            p.data.add_(0.02 * torch.randn_like(p))
    model = SamViT(encoder, prompt_encoder, decoder, img_size=64)
    model.name = cfg.name
    if cfg.checkpoint:
        load_checkpoint(model, cfg.checkpoint)
        model.weights_id = sha256_file(cfg.checkpoint)[:16]
    else:
        model.weights_id = "tiny_sam_seed0"
    return model
