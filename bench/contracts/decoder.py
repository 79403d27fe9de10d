"""The decoder side of the backbone contract: prompts, decoder outputs and PEFT decoder extensions.

:class:`Prompts` are what :meth:`bench.contracts.backbone.Backbone.decode` takes, :class:`DecoderOutput`
what it returns; a :class:`DecoderExtension` (HQ-SAM, LST) adds tokens, adapts the embedding or the logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


@dataclass
class Prompts:
    """Prompts in the model-input frame (pixels of the resized, padded image); ``Prompts()`` = none.

    Attributes:
        boxes: (B, 4) as x0, y0, x1, y1, or None.
        points: (B, N, 2) as x, y, or None.
        labels: (B, N) with 1 = foreground, 0 = background; required with ``points``.
    """

    boxes: Optional[torch.Tensor] = None
    points: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        ref = self.boxes if self.boxes is not None else self.points
        if ref is None:
            raise ValueError("Prompts needs boxes or points")
        return ref.shape[0]

    def to(self, device: torch.device | str) -> "Prompts":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Prompts(move(self.boxes), move(self.points), move(self.labels))


@dataclass
class DecoderOutput:
    """Mask-decoder outputs for a batch of (image, prompt) pairs.

    Attributes:
        logits: (B, 1, h', w') low-resolution mask logits (single-mask output).
        iou: (B, 1) predicted IoU.
        mask_token: (B, C) z_m, the two-way-transformer output of the first mask token (``hs[:, 1]``).
        embedding: (B, C, h, w) the image embedding the decoder used: z_i as given, or as a
            :class:`DecoderExtension` adapted it (LST adds its side network's output). Distillers see this.
    """

    logits: torch.Tensor
    iou: torch.Tensor
    mask_token: torch.Tensor
    embedding: Optional[torch.Tensor] = None


@dataclass
class QueryOutput:
    """Promptless decoder outputs of every mask token (:meth:`bench.contracts.backbone.Backbone.decode_queries`).

    Attributes:
        masks: (B, Q, h', w') low-resolution mask logits, one per mask token (query).
        tokens: (B, Q, C) the two-way-transformer outputs of the Q mask tokens (a class head reads them).
        embedding: (B, C, h, w) the image embedding the decoder used (as :attr:`DecoderOutput.embedding`).
    """

    masks: torch.Tensor
    tokens: torch.Tensor
    embedding: torch.Tensor


@dataclass
class DecoderState:
    """What :meth:`DecoderExtension.adapt_logits` sees of one batched decoder pass.

    Attributes:
        embedding: (B, C, h, w) image embedding the decoder used (after ``adapt_embedding``, before the
            dense prompt embedding is added).
        upscaled: (B, C/8, 4h, 4w) SAM's upscaled mask features (``output_upscaling``).
        extra_tokens: (B, T, C) two-way-transformer outputs of the extension's own tokens.
        logits: (B, 1, 4h, 4w) SAM's single-mask logits.
        blocks: The encoder block outputs the extension asked for, as (B, C_l, h_l, w_l) maps.
    """

    embedding: torch.Tensor
    upscaled: torch.Tensor
    extra_tokens: torch.Tensor
    logits: torch.Tensor
    blocks: dict[int, torch.Tensor]


class DecoderExtension(nn.Module):
    """A PEFT method's addition to the mask decoder, set as ``backbone.decoder_extension``.

    :meth:`Backbone.decode` calls ``adapt_embedding`` on the image embedding, appends
    ``extra_tokens()`` after SAM's output tokens (iou, mask tokens) in the two-way transformer, and
    lets ``adapt_logits`` post-process the low-resolution logits. The defaults change nothing.

    ``blocks`` are the encoder block indices the extension reads (the PEFT method's
    ``feature_blocks``). ``decode`` takes them from its ``blocks`` argument; missing ones fall back
    to the outputs :meth:`Backbone.encode` recorded on its last call (so ``decode(encode(x)[0], p)``
    works as well). Recorded outputs are detached and dropped by the next ``decode``.
    """

    def __init__(self, blocks: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.blocks = tuple(blocks)
        self._recorded: dict[int, torch.Tensor] = {}

    def record(self, index: int, feature: torch.Tensor) -> None:
        """Remember a block output seen by ``encode`` (used when ``decode`` is not given it)."""
        self._recorded[index] = feature.detach()

    def take_blocks(self, given: Optional[dict[int, torch.Tensor]], batch: int) -> dict[int, torch.Tensor]:
        """The requested block outputs for a decoder batch of size ``batch`` (given ones first)."""
        given = given or {}
        feats = {}
        try:
            for index in self.blocks:
                feat = given.get(index, self._recorded.get(index))
                if feat is None or feat.shape[0] != batch:
                    raise ValueError(
                        f"{type(self).__name__} needs the output of encoder block {index} for a batch of {batch}: "
                        "pass it to decode(..., blocks) (request PeftMethod.feature_blocks from the encoder) "
                        "or call encode() on the same batch right before decode()"
                    )
                feats[index] = feat
        finally:
            self._recorded = {}
        return feats

    def begin(
        self, embedding: torch.Tensor, output_tokens: torch.Tensor, given: Optional[dict[int, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor], int]:
        """Before the two-way transformer (called by every backbone's ``decode``).

        Returns:
            The adapted embedding, the output tokens with the extension's appended, the block outputs
            it reads, and the number of appended tokens.
        """
        blocks = self.take_blocks(given, embedding.shape[0])
        embedding = self.adapt_embedding(embedding, blocks)
        extra = self.extra_tokens()
        if extra is None:
            return embedding, output_tokens, blocks, 0
        return embedding, torch.cat([output_tokens, extra], dim=0), blocks, extra.shape[0]

    def extra_tokens(self) -> Optional[torch.Tensor]:
        """(T, C) output tokens appended after SAM's, or None."""
        return None

    def adapt_embedding(self, embedding: torch.Tensor, blocks: dict[int, torch.Tensor]) -> torch.Tensor:
        """The image embedding (B, C, h, w) the decoder uses."""
        return embedding

    def adapt_logits(self, state: DecoderState) -> torch.Tensor:
        """The final (B, 1, 4h, 4w) logits."""
        return state.logits
