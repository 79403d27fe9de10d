"""Export of teacher and student relation maps (InfoSAM Fig. 8/9) as arrays and a PNG figure."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


def to_maps(relation: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(B, h*w) ℓ2-normalised relations → (B, h, w) float32 maps."""
    return relation.detach().float().reshape(relation.shape[0], height, width).cpu().numpy()


def save_relation_maps(out_dir: Path, epoch: int, teacher: np.ndarray, student: np.ndarray, names: list[str]) -> Path:
    """Write ``epoch_<e>.npz`` (arrays ``teacher``, ``student``, ``names``) and ``epoch_<e>.png``.

    Returns:
        The path of the PNG figure: row 1 the teacher's maps, row 2 the student's, one column per image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / f"epoch_{epoch:03d}.npz", teacher=teacher, student=student, names=np.array(names))
    n = teacher.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6), squeeze=False)
    for j in range(n):
        for i, (label, maps) in enumerate((("teacher", teacher), ("student", student))):
            ax = axes[i][j]
            ax.imshow(maps[j], cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label)
            if i == 0:
                ax.set_title(names[j], fontsize=7)
    fig.suptitle(f"relation maps r = f(z_i, z_m), epoch {epoch}")
    fig.tight_layout()
    path = out_dir / f"epoch_{epoch:03d}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    log.info("relation maps of epoch %d written to %s", epoch, path)
    return path
