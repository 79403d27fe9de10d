"""Loss terms of the multi-class heads (``task.loss``).

* ``m2f_sum`` — AutoMM's semantic-segmentation loss (``optim/lit_semantic_seg.py``): ``transformers``'
  ``Mask2FormerLoss`` (Hungarian matching on 12 544 sampled points, costs class 2 / mask 5 / dice 5, no-object
  weight 0.1; ``Mask2FormerConfig`` defaults) and the *sum* of its three terms. AutoMM builds the loss with a
  ``weight_dict`` (CE 10, mask 5, dice 5) that ``Mask2FormerLoss.forward`` never applies, so its effective loss
  is unweighted; the targets are one binary mask per class present in the image (ignore pixels dropped, see
  :func:`per_class_targets`).
* ``m2f_weighted`` — the same terms weighted as AutoMM configured them (CE 10, mask 5, dice 5): what its
  ``weight_dict`` says, not what its code computes.
* ``ce_dice`` — SAMed's ``0.2 * CE + 0.8 * Dice`` on softmax probabilities (``trainer.py`` ``calc_loss``, its
  ``DiceLoss``: ``1 - (2 I + 1e-5) / (Σp² + Σg² + 1e-5)`` per class over the batch, averaged over classes),
  with ignore pixels excluded from both terms.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

AUTOMM_WEIGHTS = {"loss_cross_entropy": 10.0, "loss_mask": 5.0, "loss_dice": 5.0}
TERM_NAMES = {"loss_cross_entropy": "m2f_ce", "loss_mask": "m2f_mask", "loss_dice": "m2f_dice"}
SAMED_CE, SAMED_DICE = 0.2, 0.8


@lru_cache(maxsize=8)
def mask2former_loss(num_classes: int) -> Mask2FormerLoss:
    """``Mask2FormerLoss(Mask2FormerConfig(num_labels=K), weight_dict)`` as AutoMM builds it."""
    # imported here: transformers takes ~3 s to import, and a binary run (every demo run) never needs it
    from transformers import Mask2FormerConfig
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

    return Mask2FormerLoss(Mask2FormerConfig(num_labels=num_classes), dict(AUTOMM_WEIGHTS))


def per_class_targets(target: torch.Tensor, ignore_index: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per image of a (B, H, W) label map: one 0/1 mask per class present, and the class ids (AutoMM's
    ``prepare_per_category_binary_masks``, without the mask it also stacks for the ignore value: its class list
    drops that value, so with ignore pixels its two lists would not match)."""
    masks, classes = [], []
    for labels in target:
        present = torch.unique(labels)
        present = present[present != ignore_index]
        masks.append((labels[None] == present[:, None, None]).float())
        classes.append(present.long())
    return masks, classes


def m2f_terms(
    masks: torch.Tensor, class_logits: torch.Tensor, target: torch.Tensor, ignore_index: int, weighted: bool, seed: int
) -> dict[str, torch.Tensor]:
    """The Mask2Former terms (``m2f_ce``, ``m2f_mask``, ``m2f_dice``) of (B, Q, H, W) mask logits and (B, Q, K + 1)
    class logits against a (B, H, W) label map; its point sampling draws from a generator seeded by ``seed``
    (so a resumed run draws what an uninterrupted one does)."""
    criterion = mask2former_loss(class_logits.shape[-1] - 1).to(masks.device)
    mask_labels, class_labels = per_class_targets(target, ignore_index)
    devices = [masks.device] if masks.device.type != "cpu" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        raw = criterion(masks.float(), class_logits.float(), [m.to(masks.device) for m in mask_labels], class_labels)
    return {TERM_NAMES[k]: v * (AUTOMM_WEIGHTS[k] if weighted else 1.0) for k, v in raw.items()}


def ce_dice_terms(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> dict[str, torch.Tensor]:
    """SAMed's terms on (B, K, H, W) per-class logits: ``ce`` = 0.2 · cross-entropy and ``dice`` = 0.8 · Dice."""
    logits = logits.float()
    k = logits.shape[1]
    valid = target != ignore_index
    ce = F.cross_entropy(logits, target.long(), ignore_index=ignore_index) if valid.any() else logits.sum() * 0
    probs = logits.softmax(1) * valid[:, None]
    onehot = F.one_hot(torch.where(valid, target, 0).long(), k).permute(0, 3, 1, 2).float() * valid[:, None]
    inter = (probs * onehot).sum((0, 2, 3))
    dice = 1 - (2 * inter + 1e-5) / ((probs * probs).sum((0, 2, 3)) + (onehot * onehot).sum((0, 2, 3)) + 1e-5)
    return {"ce": SAMED_CE * ce, "dice": SAMED_DICE * dice.mean()}
