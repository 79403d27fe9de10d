"""Structure loss = weighted IoU + weighted BCE (F3Net/PraNet), the segmentation loss of InfoSAM.

``weight = 1 + 5·|avgpool31(gt) − gt|`` emphasises pixels near the boundary. The BCE term is the
pixel-weighted mean ``Σ w·bce / Σ w`` per image. The public InfoSAM/Conv-LoRA code passes
``reduce='none'`` to ``binary_cross_entropy_with_logits``, which torch reads as the legacy flag and
reduces to a plain mean: its "weighted" BCE is unweighted. ``variant="unweighted_bce"`` reproduces it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

VARIANTS = ("weighted", "unweighted_bce", "balanced_bce")


def box_mean(x: torch.Tensor, k: int = 31) -> torch.Tensor:
    """``F.avg_pool2d(x, k, stride=1, padding=k // 2)`` (zero padding counted) as two 1-D passes.

    A k×k box is the product of a k×1 and a 1×k box, so this is the same mean with 2k instead of k²
    additions per pixel: 6.5× faster at 128 px and 6.8× at 1024 px on one CPU thread, equal up to
    float rounding (2e-7).
    """
    rows = F.avg_pool2d(x, kernel_size=(k, 1), stride=1, padding=(k // 2, 0))
    return F.avg_pool2d(rows, kernel_size=(1, k), stride=1, padding=(0, k // 2))


def boundary_weight(target: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) → 1 + 5·|avgpool31(target) − target|."""
    return 1 + 5 * torch.abs(box_mean(target, 31) - target)


def structure_loss(logits: torch.Tensor, target: torch.Tensor, variant: str = "weighted") -> torch.Tensor:
    """Mean over the batch of weighted BCE + weighted IoU.

    Args:
        logits: (B, 1, H, W) mask logits.
        target: (B, 1, H, W) binary ground truth (float).
        variant: ``"weighted"`` (correct pixel-weighted BCE), ``"unweighted_bce"`` (public-code quirk), or
            ``"balanced_bce"`` (Conv-LoRA's shadow loss, :func:`balanced_bce`, not a structure loss).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown structure loss variant {variant!r}; valid: {VARIANTS}")
    logits, target = logits.float(), target.float()
    if variant == "balanced_bce":
        return balanced_bce(logits, target)
    weit = boundary_weight(target)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if variant == "weighted":
        wbce = (weit * bce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
    else:
        wbce = bce.mean().expand(logits.shape[0], 1)
    pred = torch.sigmoid(logits)
    inter = (pred * target * weit).sum(dim=(2, 3))
    union = ((pred + target) * weit).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Conv-LoRA's loss on SBU (autogluon ``optim/losses/bce_loss.py``, ``BBCEWithLogitLoss``), per sample:
    ``w·BCE(pos_weight = n_neg / n_pos)`` with ``w = n_pos / (n_pos + n_neg)`` and ``n_pos`` offset by 1e-10,
    the mean over pixels; then the mean over the batch (the public setting runs one image per GPU step and
    accumulates gradients to a batch of 4, so the counts are per image)."""
    losses = []
    for x, t in zip(logits, target):
        pos = t.sum() + 1e-10
        neg = (1.0 - t).sum()
        bce = F.binary_cross_entropy_with_logits(x, t, pos_weight=neg / pos)
        losses.append(pos / (pos + neg) * bce)
    return torch.stack(losses).mean()
