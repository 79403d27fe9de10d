"""Multi-class heads on SAM's mask decoder (``task.head``).

* :class:`QueriesHead` (``queries``): AutoMM's ``SAMForSemanticSegmentation`` (autogluon
  ``multimodal/models/sam.py``, ``multi_class_mask_decoder_forward``): ``Q`` copies of SAM's mask token 0 all
  mapped through hypernetwork MLP 0 give ``Q`` masks; a linear class head on the ``Q`` token outputs gives
  ``K + 1`` logits each (the last: "no object"). Semantic scores are Mask2Former's semantic inference,
  ``einsum(softmax(class)[..., :-1], sigmoid(mask))``, and the label is their argmax over the ``K`` classes.
* :class:`PerClassHead` (``per_class``): SAMed's multi-class SAM (Zhang & Liu 2023, ``sam_lora_image_encoder``
  with ``num_classes``): one mask token per class whose mask *is* that class's logit map, softmax over the
  classes, argmax. No matching and no class head: the standard simple alternative for a fixed label set
  (also what nnU-Net-style CE + Dice training expects). Here the ``K`` tokens start as copies of mask token 0
  and share hypernetwork MLP 0, as AutoMM's copies do (SAMed's extra tokens and MLPs start at random).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.backbones import Backbone
from bench.config import ConfigError


def set_mask_tokens(model: Backbone, n: int) -> None:
    """``n`` mask tokens, each a copy of the decoder's mask token 0, and hypernetwork MLP 0 only (AutoMM's
    ``SAMForSemanticSegmentation(num_mask_tokens=n)``); works from any current number of tokens."""
    if n < 1:
        raise ConfigError(f"a decoder needs at least one mask token, got {n}")
    dec = model.mask_decoder
    first = dec.mask_tokens.weight.data[0].clone()
    dec.mask_tokens = nn.Embedding(n, first.shape[0]).to(first.device, first.dtype)
    dec.mask_tokens.weight.data.copy_(first.expand(n, -1))
    dec.output_hypernetworks_mlps = nn.ModuleList([dec.output_hypernetworks_mlps[0]])
    dec.num_mask_tokens = n


class QueriesHead(nn.Module):
    """The class head of the ``queries`` head: ``nn.Linear(C, K + 1)`` on each mask token's output."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.class_embed = nn.Linear(dim, num_classes + 1)

    def class_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, Q, C) mask-token outputs → (B, Q, K + 1) class logits."""
        return self.class_embed(tokens)

    def scores(self, masks: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
        """(B, Q, H, W) mask logits and (B, Q, K + 1) class logits → (B, K, H, W) semantic scores."""
        probs = class_logits.float().softmax(-1)[..., :-1]
        return torch.einsum("bqc,bqhw->bchw", probs, masks.float().sigmoid())


class PerClassHead(nn.Module):
    """The ``per_class`` head: mask token ``c``'s mask is the logit map of class ``c`` (no parameters)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def class_logits(self, tokens: torch.Tensor) -> None:
        return None

    def scores(self, masks: torch.Tensor, class_logits: None = None) -> torch.Tensor:
        """(B, K, H, W) per-class logits → (B, K, H, W) softmax probabilities."""
        return masks.float().softmax(1)
