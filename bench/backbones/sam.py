"""SAM ViT-B/L/H backbones built with the official ``segment_anything`` builders.

Weights: ``backbone.checkpoint``, or the official file in ``backbone.checkpoints_dir`` (``python
run_benchmark.py download backbone=sam_vit_b``; see :mod:`bench.contracts.weights`), loaded with ``weights_only=True``
and strict key checks; random weights only with ``backbone.random_init=true``.
"""

from __future__ import annotations

from typing import Callable

from segment_anything.build_sam import sam_model_registry
from torch import nn

from bench.config import BackboneConfig, ConfigError
from bench.contracts.backbone import Backbone, register_backbone
from bench.contracts.checkpoints import attach_weights
from bench.contracts.encoder import EncoderStep
from bench.contracts.weights import resolve_checkpoint


class SamViT(Backbone):
    """Official SAM with a plain ViT encoder (1024-px input, 64×64×256 embedding)."""

    family = "sam"
    normalization = "sam"

    def encoder_blocks(self) -> list[nn.Module]:
        return list(self.image_encoder.blocks)

    def stage_ends(self) -> list[int]:
        ends = [i for i, blk in enumerate(self.image_encoder.blocks) if blk.window_size == 0]
        last = len(self.image_encoder.blocks) - 1
        return ends if ends and ends[-1] == last else ends + [last]

    def encoder_steps(self) -> list[EncoderStep]:
        enc = self.image_encoder

        def embed(x):
            x = enc.patch_embed(x)
            return x if enc.pos_embed is None else x + enc.pos_embed

        embed_params = list(enc.patch_embed.parameters())
        if enc.pos_embed is not None:
            embed_params.append(enc.pos_embed)
        steps = [EncoderStep("image_encoder.patch_embed", embed, embed_params)]
        for i, blk in enumerate(enc.blocks):
            steps.append(EncoderStep(f"image_encoder.blocks.{i}", blk, list(blk.parameters()), block=i))
        steps.append(
            EncoderStep("image_encoder.neck", lambda x: enc.neck(x.permute(0, 3, 1, 2)), list(enc.neck.parameters()))
        )
        return steps


def _sam_builder(variant: str) -> Callable[[BackboneConfig], Backbone]:
    def build(cfg: BackboneConfig) -> Backbone:
        if cfg.img_size not in (None, 1024):
            raise ConfigError(f"backbone.img_size must be 1024 for {cfg.name} (its position embedding is fixed)")
        sam = sam_model_registry[variant](checkpoint=None)
        model = SamViT(sam.image_encoder, sam.prompt_encoder, sam.mask_decoder, img_size=1024)
        model.name = cfg.name
        path = resolve_checkpoint(cfg)
        if path:
            attach_weights(model, path)
        return model

    return build


for _variant in ("vit_b", "vit_l", "vit_h"):
    register_backbone(f"sam_{_variant}", SamViT.family)(_sam_builder(_variant))
