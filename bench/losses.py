"""Structure loss = weighted IoU + weighted BCE (F3Net/PraNet), the segmentation loss of InfoSAM.

``weight = 1 + 5·|avgpool31(gt) − gt|`` emphasises pixels near the boundary. The BCE term is the
pixel-weighted mean ``Σ w·bce / Σ w`` per image. The public InfoSAM/Conv-LoRA code passes
``reduce='none'`` to ``binary_cross_entropy_with_logits``, which torch reads as the legacy flag and
reduces to a plain mean: its "weighted" BCE is unweighted. ``variant="unweighted_bce"`` reproduces it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

VARIANTS = ("weighted", "unweighted_bce")


def boundary_weight(target: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) → 1 + 5·|avgpool31(target) − target|."""
    return 1 + 5 * torch.abs(F.avg_pool2d(target, kernel_size=31, stride=1, padding=15) - target)


def structure_loss(logits: torch.Tensor, target: torch.Tensor, variant: str = "weighted") -> torch.Tensor:
    """Mean over the batch of weighted BCE + weighted IoU.

    Args:
        logits: (B, 1, H, W) mask logits.
        target: (B, 1, H, W) binary ground truth (float).
        variant: ``"weighted"`` (correct pixel-weighted BCE) or ``"unweighted_bce"`` (public-code quirk).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown structure loss variant {variant!r}; valid: {VARIANTS}")
    logits, target = logits.float(), target.float()
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
