"""The backbone interface shared by SAM, SAM2 and TinyViT SAMs.

A :class:`Backbone` wraps the official model components (``image_encoder``, ``prompt_encoder``,
``mask_decoder``) and exposes the operations the trainer and the distillers need:

* :meth:`preprocess_image` / :meth:`preprocess_mask` — longest-side resize, normalisation and
  bottom-right padding to a square ``img_size`` input (numpy side, runs in data workers);
* :meth:`encode` — image → embedding z_i (B, C, h, w), optionally starting from a cached
  intermediate state and returning requested block outputs;
* :meth:`decode` — embedding + prompts → low-resolution logits, IoU and the mask token z_m;
* :meth:`postprocess` — low-resolution logits → logits at the original image size.

The encoder is described as a flat list of *steps* (patch embedding, each transformer block,
down-sampling layers, neck). PEFT methods inject into :meth:`encoder_blocks`; the encoder cache
stores the output of the longest frozen prefix of steps, which is exact because backbones always
run in eval mode (frozen BatchNorm statistics; SAM has no dropout).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from bench.config import BackboneConfig, ConfigError
from bench.contracts.checkpoints import CheckpointError, attach_weights, load_checkpoint
from bench.contracts.decoder import DecoderExtension, DecoderOutput, DecoderState, Prompts, QueryOutput
from bench.contracts.encoder import INPUT_EMBEDDING, AttentionLayout, EncoderStep, attention_layout_of, run_steps
from bench.fileio import sha256_file
from bench.registry import Registry

__all__ = [
    "BACKBONES",
    "INPUT_EMBEDDING",
    "AttentionLayout",
    "Backbone",
    "BackboneBuilder",
    "CheckpointError",
    "DecoderExtension",
    "DecoderOutput",
    "DecoderState",
    "EncoderStep",
    "Prompts",
    "QueryOutput",
    "attach_weights",
    "backbone_family",
    "build_backbone",
    "check_img_size",
    "keep_mask_tokens",
    "load_checkpoint",
    "register_backbone",
    "run_steps",
    "sha256_file",
]

log = logging.getLogger(__name__)


class Backbone(nn.Module):
    """Base class of all backbones. Subclasses build the official components and define the steps.

    Attributes:
        name: Registry name.
        img_size: Square model input size S.
        embed_dim: Channel width C of the image embedding and the decoder tokens.
        normalization: ``"sam"`` (ImageNet mean/std on 0..255) or ``"minmax"`` (per-image [0, 1]).
        preprocess: How images become inputs (``data.preprocess``, see :meth:`preprocess_image`).
        family: Model family (``"sam"``, ``"sam2"``, ``"tinyvit"``); PEFT methods and distillers name the
            families they cannot handle (``unsupported``), and the launcher refuses those combinations.
    """

    name: str = "backbone"
    family: str = ""
    normalization: str = "sam"
    preprocess: str = "sam"  # data.preprocess, set by the runner: "sam" | "infosam" | "square"
    pixel_mean = np.array([123.675, 116.28, 103.53], dtype=np.float32)
    pixel_std = np.array([58.395, 57.12, 57.375], dtype=np.float32)

    def __init__(
        self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module, img_size: int
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.img_size = img_size
        self.embed_dim = int(mask_decoder.transformer_dim)
        self.weights_id = "random"
        self.checkpoint_path: Optional[str] = None  # the file the weights came from (None: random/seeded)
        self.checkpoint_sha256: Optional[str] = None
        self.decoder_extension: Optional[DecoderExtension] = None

    # ------------------------------------------------------------------ structure
    def encoder_steps(self) -> list[EncoderStep]:
        raise NotImplementedError

    def encoder_blocks(self) -> list[nn.Module]:
        """Transformer blocks of the encoder, each with ``attn.qkv`` and ``mlp``, in order."""
        raise NotImplementedError

    def attention_layout(self, block: nn.Module) -> AttentionLayout:
        """How ``block``'s attention is laid out (fused ``qkv`` groups, q/k/v widths, heads); families whose
        attention the default reading does not know override this."""
        return attention_layout_of(block)

    def patch_embedding(self) -> tuple[nn.Module, nn.Module]:
        """``(owner, patch_embed)``: the encoder's patch embedding and the module holding it as ``patch_embed``
        (the image encoder, or SAM2's Hiera trunk)."""
        owner = self.image_encoder
        if getattr(owner, "patch_embed", None) is None:
            owner = getattr(owner, "trunk", owner)
        return owner, getattr(owner, "patch_embed", None)

    def official_state(self, checkpoint: Optional[str] = None) -> dict[str, torch.Tensor]:
        """The state dict of the family's whole official model holding this backbone's weights, for export.

        Only families whose backbone wraps a part of a larger official model (SAM2: the image path of
        ``SAM2Base``) override this; for the others (SAM ViT, TinyViT SAMs) this backbone's own state dict is
        already the official one, and asking raises. ``checkpoint`` is the file the pretrained weights came
        from (None: the seeded/random ones): the official modules this backbone does not hold keep its values.
        """
        raise NotImplementedError(
            f"{self.name}: the {self.family or 'unnamed'} family has no official model beyond this backbone "
            "(its own state_dict() is the official one)"
        )

    def stage_ends(self) -> list[int]:
        """Indices into :meth:`encoder_blocks` of the last block of each encoder *stage*.

        Multi-layer distillers and HQ-SAM read features at these blocks. Hierarchical encoders
        (TinyViT, Hiera) end a stage where the resolution changes; a plain ViT SAM ends one at each
        global-attention block (ViT-B: 2, 5, 8, 11).
        """
        raise NotImplementedError

    def block_dims(self) -> list[int]:
        """Channel width of each encoder block's output (``dim_out`` where a block changes width)."""
        dims = []
        for blk in self.encoder_blocks():
            dim = getattr(blk, "dim_out", None) or getattr(blk, "dim", None)
            dims.append(int(dim if dim is not None else blk.norm1.normalized_shape[0]))  # segment-anything's Block
        return dims

    # ------------------------------------------------------------------ numpy-side preprocessing
    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        """Size of the resized image inside the S×S input: the longest side scaled to S, or S×S under the
        ``square`` preprocessing (Conv-LoRA's ``resize_to_square``)."""
        if self.preprocess == "square":
            return self.img_size, self.img_size
        scale = self.img_size / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def preprocess_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB → (3, S, S) float32, by :attr:`preprocess` (``data.preprocess``):

        * ``"sam"``: longest side to S (PIL bilinear), normalise, zero-pad bottom-right (SAM's
          ``preprocess``: padding is 0 after normalisation);
        * ``"infosam"``: the public InfoSAM ``CSVDataset``: channels in cv2's BGR order, the same resize,
          zero-pad the uint8 image, then normalise (padding becomes ``-mean/std``; min-max sees it);
        * ``"square"``: Conv-LoRA's ``resize_to_square``: bicubic to S×S (aspect not kept), normalise.
        """
        if self.preprocess == "infosam":
            image = np.ascontiguousarray(image[..., ::-1])
        h, w = self.resized_shape(*image.shape[:2])
        resample = Image.BICUBIC if self.preprocess == "square" else Image.BILINEAR
        resized = np.asarray(Image.fromarray(image).resize((w, h), resample), dtype=np.float32)
        if self.preprocess == "infosam":
            canvas = np.zeros((self.img_size, self.img_size, 3), dtype=np.float32)
            canvas[:h, :w] = resized
            return self._normalize(canvas).transpose(2, 0, 1).copy()
        out = np.zeros((3, self.img_size, self.img_size), dtype=np.float32)
        out[:, :h, :w] = self._normalize(resized).transpose(2, 0, 1)
        return out

    def _normalize(self, pixels: np.ndarray) -> np.ndarray:
        """(h, w, 3) float32 pixel values 0..255 → the encoder's input scale."""
        if self.normalization == "minmax":
            lo, hi = pixels.min(), pixels.max()
            return (pixels - lo) / max(hi - lo, 1e-8)
        return (pixels - self.pixel_mean) / self.pixel_std

    def preprocess_mask(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) {0,1} → (S, S) float32 in the model-input frame, zero padding: nearest-neighbour resize,
        or bilinear under ``"infosam"`` as the public code does (PIL on the 0/1 uint8 mask, which rounds
        back to 0/1)."""
        h, w = self.resized_shape(*mask.shape)
        resample = Image.BILINEAR if self.preprocess == "infosam" else Image.NEAREST
        resized = np.asarray(Image.fromarray(mask).resize((w, h), resample), dtype=np.float32)
        out = np.zeros((self.img_size, self.img_size), dtype=np.float32)
        out[:h, :w] = resized
        return out

    # ------------------------------------------------------------------ forward pieces
    def encode(
        self, x: torch.Tensor, start: int = 0, blocks: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run encoder steps ``start..end`` on ``x`` (the image when ``start == 0``).

        Returns:
            The image embedding (B, C, h, w) and the requested block outputs as (B, C_l, h_l, w_l)
            (``INPUT_EMBEDDING``: the input of block 0).
        """
        return run_steps(self.encoder_steps()[start:], x, blocks, self.decoder_extension)

    def encode_prefix(
        self, x: torch.Tensor, stop: int, blocks: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """State after the first ``stop`` encoder steps (what the cache stores), and the outputs of the
        requested blocks among those steps as (B, C_l, h_l, w_l) maps."""
        return run_steps(self.encoder_steps()[:stop], x, blocks)

    def frozen_prefix(self) -> int:
        """Number of leading encoder steps without trainable parameters (cacheable)."""
        steps = self.encoder_steps()
        for i, step in enumerate(steps):
            if any(p.requires_grad for p in step.params):
                return i
        return len(steps)

    def decode(
        self, embedding: torch.Tensor, prompts: Prompts, blocks: Optional[dict[int, torch.Tensor]] = None
    ) -> DecoderOutput:
        """Decode one single-mask prediction per (embedding, prompt) pair, for the whole batch at once.

        ``blocks`` carries the intermediate encoder features a PEFT method asked for
        (:meth:`bench.contracts.peft.PeftMethod.feature_blocks`); the plain decoder does not use them, a
        :class:`DecoderExtension` (``self.decoder_extension``, e.g. HQ-SAM's) may.

        ``MaskDecoder.forward`` expands one image over many prompts (it repeats the embedding per
        prompt), so this thin call runs the official decoder's own submodules in the order of
        ``MaskDecoder.predict_masks`` with one prompt per image, and keeps only the single-mask output
        (mask token 0), as ``multimask_output=False`` does. ``Prompts()`` (no box, no point) decodes
        promptless with the prompt encoder's no-prompt embeddings (Conv-LoRA's setting).

        The family-specific parts are hooks: :meth:`encode_prompts`, :meth:`leading_tokens` and
        :meth:`upscale_features` (SAM2 overrides all three).
        """
        dec = self.mask_decoder
        ext = self.decoder_extension
        run = self._two_way(embedding, prompts, blocks)
        b, s = run.hs.shape[0], run.iou_index
        mask_token = run.hs[:, s + 1, :]
        hyper = dec.output_hypernetworks_mlps[0](mask_token)  # (B, C')
        _, c2, h2, w2 = run.upscaled.shape
        logits = (hyper.unsqueeze(1) @ run.upscaled.reshape(b, c2, h2 * w2)).reshape(b, 1, h2, w2)
        iou = dec.iou_prediction_head(run.hs[:, s, :])[:, :1]
        if ext is not None:
            first = s + 1 + dec.mask_tokens.weight.shape[0]
            extra = run.hs[:, first : first + run.n_extra, :]
            state = DecoderState(run.embedding, run.upscaled, extra, logits, run.blocks)
            logits = ext.adapt_logits(state)
        return DecoderOutput(logits, iou, mask_token, run.embedding)

    def decode_queries(self, embedding: torch.Tensor, blocks: Optional[dict[int, torch.Tensor]] = None) -> QueryOutput:
        """Decode promptless with *every* mask token of the decoder: one mask per token, for the whole batch.

        The multi-class heads (:mod:`bench.tasks`) read this: AutoMM's ``multi_class_mask_decoder_forward`` runs
        the official two-way transformer on the IoU token and all ``num_mask_tokens`` mask tokens with the no-prompt
        embeddings, and maps every mask token's output through hypernetwork MLP 0 (its copies of token 0 share
        it). The same pass as :meth:`decode` (same submodules, same order); a :class:`DecoderExtension`'s tokens and
        embedding adaptation apply, its ``adapt_logits`` (single-mask logits) does not exist here.
        """
        dec = self.mask_decoder
        run = self._two_way(embedding, Prompts(), blocks)
        b, s = run.hs.shape[0], run.iou_index
        n = dec.mask_tokens.weight.shape[0]
        tokens = run.hs[:, s + 1 : s + 1 + n, :]  # (B, Q, C)
        hyper = dec.output_hypernetworks_mlps[0](tokens)  # (B, Q, C')
        _, c2, h2, w2 = run.upscaled.shape
        masks = (hyper @ run.upscaled.reshape(b, c2, h2 * w2)).reshape(b, n, h2, w2)
        return QueryOutput(masks, tokens, run.embedding)

    def _two_way(
        self, embedding: torch.Tensor, prompts: Prompts, blocks: Optional[dict[int, torch.Tensor]]
    ) -> "_TwoWay":
        """The decoder's two-way transformer pass and upscaling shared by :meth:`decode` and :meth:`decode_queries`."""
        dec = self.mask_decoder
        ext = self.decoder_extension
        sparse, dense = self.encode_prompts(prompts)
        b = embedding.shape[0]
        if sparse.shape[0] != b:  # no prompt (Prompts()): one empty (1, 0, C) entry for the whole batch
            sparse = sparse.expand(b, -1, -1)
        lead = self.leading_tokens()
        s = len(lead)  # index of the IoU token; the mask tokens follow it
        output_tokens = torch.cat([*lead, dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        given_embedding, given_blocks = embedding, blocks
        n_extra = 0
        if ext is not None:
            embedding, output_tokens, blocks, n_extra = ext.begin(embedding, output_tokens, blocks)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(b, -1, -1), sparse), dim=1)
        src = embedding + dense
        pos_src = self.prompt_encoder.get_dense_pe().expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = dec.transformer(src, pos_src, tokens)
        upscaled = self.upscale_features(src.transpose(1, 2).reshape(b, c, h, w), given_embedding, given_blocks)
        return _TwoWay(hs, upscaled, s, embedding, blocks or {}, n_extra)

    def encode_prompts(self, prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse and dense prompt embeddings from the official prompt encoder."""
        points = None if prompts.points is None else (prompts.points, prompts.labels)
        return self.prompt_encoder(points=points, boxes=prompts.boxes, masks=None)

    def leading_tokens(self) -> list[torch.Tensor]:
        """Decoder output tokens placed before the IoU token (none in SAM)."""
        return []

    def upscale_features(
        self, src: torch.Tensor, embedding: torch.Tensor, blocks: Optional[dict[int, torch.Tensor]]
    ) -> torch.Tensor:
        """The decoder's upscaled image features (B, C', 4h, 4w) from the transformer output ``src``
        (B, C, h, w); ``embedding`` and ``blocks`` are what :meth:`decode` was given."""
        return self.mask_decoder.output_upscaling(src)

    def upscale(self, logits: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits → (B, 1, S, S) in the model-input frame."""
        if logits.shape[-1] == self.img_size:
            return logits
        return F.interpolate(logits, (self.img_size, self.img_size), mode="bilinear", align_corners=False)

    def postprocess(self, logits: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """Low-resolution logits (1, 1, h', w') → logits (1, 1, H, W) at the original image size."""
        h, w = self.resized_shape(*original_size)
        up = self.upscale(logits)[..., :h, :w]
        return F.interpolate(up, original_size, mode="bilinear", align_corners=False)


@dataclass
class _TwoWay:
    """One pass of the decoder's two-way transformer: its output tokens ``hs`` (IoU token at ``iou_index``, the
    mask tokens after it, an extension's ``n_extra`` tokens after those), the upscaled image features, and the
    embedding and block outputs the decoder used."""

    hs: torch.Tensor
    upscaled: torch.Tensor
    iou_index: int
    embedding: torch.Tensor
    blocks: dict[int, torch.Tensor]
    n_extra: int


BackboneBuilder = Callable[[BackboneConfig], Backbone]
BACKBONES: Registry[BackboneBuilder] = Registry("backbone", "bench.backbones")
"""Backbone builders, one module per model family under ``bench/backbones/`` (discovered)."""


def register_backbone(name: str, family: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator registering a builder under ``name`` with its model ``family`` (readable without building):
    ``@BACKBONES.register(name, family=family)``."""
    return BACKBONES.register(name, family=family)


def backbone_family(name: str) -> Optional[str]:
    """Family of a registered backbone (None when its builder declares none); unknown names raise."""
    return BACKBONES.meta(name).get("family") or None


def keep_mask_tokens(model: Backbone, n: int) -> None:
    """Keep the first ``n`` mask tokens and hypernetwork MLPs of the decoder (Conv-LoRA's
    ``num_mask_tokens``: AutoMM's ``SAMForSemanticSegmentation`` copies mask token 0 into each kept token
    and keeps hypernetwork MLP 0 only; for ``n = 1`` both are simply the first)."""
    dec = model.mask_decoder
    total = dec.mask_tokens.weight.shape[0]
    if not 1 <= n <= total:
        raise ConfigError(f"backbone.mask_tokens must be in 1..{total} for {model.name}, got {n}")
    first = dec.mask_tokens.weight.data[0].clone()
    dec.mask_tokens = nn.Embedding(n, first.shape[0]).to(first.device, first.dtype)
    dec.mask_tokens.weight.data.copy_(first.expand(n, -1))
    dec.output_hypernetworks_mlps = nn.ModuleList([dec.output_hypernetworks_mlps[0]])
    dec.num_mask_tokens = n


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """Build a registered backbone; unknown names raise listing the valid ones."""
    builder = BACKBONES.get(cfg.name)
    model = builder(cfg)
    model.eval()
    if cfg.mask_tokens is not None:
        keep_mask_tokens(model, cfg.mask_tokens)
    if model.weights_id == "random":
        log.warning("backbone %s: RANDOM weights (backbone.random_init=true); results are not a model's", cfg.name)
    return model


def check_img_size(cfg: BackboneConfig, native: int, multiple: int) -> int:
    size = cfg.img_size or native
    if size % multiple:
        raise ConfigError(f"backbone.img_size={size} must be a multiple of {multiple} for {cfg.name}")
    return size
