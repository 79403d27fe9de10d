"""HQ-SAM (Ke et al., NeurIPS 2023, "Segment Anything in High Quality"): a learnable HQ output token
and a global-local fusion of early and final encoder features, on top of a completely frozen SAM.

Follows ``MaskDecoderHQ`` of SysCV/sam-hq (``segment_anything/modeling/mask_decoder_hq.py``;
``train/train.py`` for what trains). With C the decoder width (256 in SAM), C_v the width of the
early encoder feature and ``LN`` = LayerNorm2d:

* ``hf_token`` (1 × C) joins the two-way transformer after SAM's iou and mask tokens; ``hf_mlp`` is
  its own 3-layer hypernetwork MLP (C → C → C → C/8);
* ``compress_vit_feat`` = ConvT(C_v → C, 2, 2) · LN · GELU · ConvT(C → C/8, 2, 2) on the early feature
  (the output of the first global-attention block, ``stage_ends()[0]``, requested through
  :meth:`HQSAM.feature_blocks`);
* ``embedding_encoder`` = ConvT(C → C/4, 2, 2) · LN · GELU · ConvT(C/4 → C/8, 2, 2) on the final image
  embedding; ``hq_feat = embedding_encoder(z) + compress_vit_feat(early)``;
* ``embedding_maskfeature`` = Conv3×3(C/8 → C/4) · LN · GELU · Conv3×3(C/4 → C/8) on SAM's upscaled
  mask features; ``upscaled_hq = embedding_maskfeature(upscaled_sam) + hq_feat``;
* HQ token mask = ``hf_mlp(token_out) @ upscaled_hq``; the output is the HQ token mask alone
  (``peft.output=hq``, default: ``hq_token_only=True``, what ``train/train.py`` trains and evaluates),
  or SAM's mask logits + the HQ token mask (``peft.output=sum``, ``hq_token_only=False``, the official
  predictor's inference default). The loss and the evaluation always use the same output.

Trained as HQ-SAM trains: the whole SAM is frozen, *including the mask decoder* (``train_decoder =
False``); only the HQ token, its MLP and the three fusion blocks train. The SAM iou prediction is
kept. New layers use PyTorch's default initialisation, as in the official code.

Not identical to SAM at initialisation (``identity_at_init = False``): the HQ token takes part in
the transformer's token self-attention, so even SAM's own tokens (and mask) change, and the
randomly initialised HQ mask is added on top.

Deviations: TinyViT backbones (LiteMedSAM) take ``stage_ends()[0]``, the last block of the first
transformer stage, *before* its patch merging (2× the embedding grid); its map is bilinearly
resized (= 2×2 average) to the embedding grid. Light HQ-SAM reads that stage after the merging
(160 channels at the embedding grid). ``peft.block`` selects another block. HQ-SAM's own training
recipe (Adam lr 1e-3, 12 epochs, BCE + Dice on sampled points, box / point / noisy-mask prompts) is
not imposed: runs use this suite's protocol like every other method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from torch import nn

from bench.backbones import Backbone
from bench.config import ConfigError
from bench.contracts.decoder import DecoderExtension, DecoderState
from bench.contracts.peft import PEFT_METHODS, PeftMethod

OUTPUTS = ("sum", "hq")


@dataclass
class HQSAMOptions:
    block: Optional[int] = field(
        default=None, metadata={"help": "encoder block of the early feature; None = stage_ends()[0] (1st global block)"}
    )
    output: str = field(
        default="hq", metadata={"help": "hq = HQ token mask only (train.py) | sum = SAM mask + HQ mask (predictor)"}
    )

    def __post_init__(self) -> None:
        if self.block is not None and self.block < 0:
            raise ValueError(f"block must be >= 0, got {self.block}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {list(OUTPUTS)}, got {self.output!r}")


def _up(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    """ConvT(2, 2) · LayerNorm2d · GELU · ConvT(2, 2): ×4 resolution."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_mid, kernel_size=2, stride=2),
        LayerNorm2d(c_mid),
        nn.GELU(),
        nn.ConvTranspose2d(c_mid, c_out, kernel_size=2, stride=2),
    )


class HQDecoder(DecoderExtension):
    """The HQ output token, its MLP and the fusion layers (a :class:`DecoderExtension`).

    Args:
        dim: Decoder width C.
        early_dim: Channels C_v of the early encoder feature.
        block: Index of the early feature's encoder block.
        output: ``"sum"`` or ``"hq"`` (see the module docstring).
    """

    def __init__(self, dim: int, early_dim: int, block: int, output: str) -> None:
        super().__init__(blocks=(block,))
        if dim % 8:
            raise ConfigError(f"hqsam needs a decoder width divisible by 8, got {dim}")
        self.block = block
        self.output = output
        self.hf_token = nn.Embedding(1, dim)
        self.hf_mlp = MLP(dim, dim, dim // 8, 3)
        self.compress_vit_feat = _up(early_dim, dim, dim // 8)
        self.embedding_encoder = _up(dim, dim // 4, dim // 8)
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(dim // 8, dim // 4, 3, 1, 1),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.Conv2d(dim // 4, dim // 8, 3, 1, 1),
        )

    def extra_tokens(self) -> torch.Tensor:
        return self.hf_token.weight

    def hq_features(self, embedding: torch.Tensor, early: torch.Tensor) -> torch.Tensor:
        """(B, C/8, 4h, 4w) = embedding_encoder(z) + compress_vit_feat(early feature on z's grid)."""
        if early.shape[-2:] != embedding.shape[-2:]:
            early = F.interpolate(early, size=embedding.shape[-2:], mode="bilinear", align_corners=False)
        return self.embedding_encoder(embedding) + self.compress_vit_feat(early)

    def hq_logits(self, state: DecoderState) -> torch.Tensor:
        """(B, 1, 4h, 4w) logits of the HQ token alone."""
        hq_feat = self.hq_features(state.embedding, state.blocks[self.block])
        upscaled = self.embedding_maskfeature(state.upscaled) + hq_feat
        hyper = self.hf_mlp(state.extra_tokens[:, 0, :])  # (B, C/8)
        b, c, h, w = upscaled.shape
        return (hyper.unsqueeze(1) @ upscaled.reshape(b, c, h * w)).reshape(b, 1, h, w)

    def adapt_logits(self, state: DecoderState) -> torch.Tensor:
        hq = self.hq_logits(state)
        return hq if self.output == "hq" else state.logits + hq


@PEFT_METHODS.register("hqsam")
class HQSAM(PeftMethod):
    """HQ output token + global-local feature fusion; SAM (decoder included) stays frozen."""

    Options = HQSAMOptions
    train_decoder = False  # HQ-SAM freezes the SAM mask decoder and trains only its new parts
    identity_at_init = False  # the HQ token changes the token attention and adds a random HQ mask
    unsupported_tasks = {"semantic": "its HQ token rewrites SAM's one-mask logits; HQ-SAM has no multi-class form"}

    def feature_blocks(self, backbone: Backbone) -> tuple[int, ...]:
        o: HQSAMOptions = self.options
        return (backbone.stage_ends()[0] if o.block is None else o.block,)

    def inject(self, backbone: Backbone) -> list[str]:
        o: HQSAMOptions = self.options
        if backbone.decoder_extension is not None:
            raise ConfigError(f"{backbone.name} already has a decoder extension; hqsam cannot add another")
        (block,) = self.feature_blocks(backbone)
        dims = backbone.block_dims()
        if not 0 <= block < len(dims):
            raise ConfigError(f"hqsam: peft.block={block} but {backbone.name} has {len(dims)} encoder blocks")
        backbone.decoder_extension = HQDecoder(backbone.embed_dim, dims[block], block, o.output)
        return ["decoder_extension"]
