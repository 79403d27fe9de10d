"""The official checkpoints of the full-size backbones, and where a backbone finds its weights.

``WEIGHTS`` lists, per registered backbone, the file the authors publish. Hashes: none of the official
sources publishes a checksum (facebookresearch/segment-anything README "Model Checkpoints" gives the
three URLs only; facebookresearch/sam2 ``checkpoints/download_ckpts.sh`` the four SAM 2.1 URLs only;
ChaoningZhang/MobileSAM ships ``weights/mobile_sam.pt`` in the repository), and none gives the file
size in bytes. So ``sha256`` and ``size`` are None: ``download`` then records the digest of the file it
received beside it (``<file>.sha256``) and says that it could not be verified; pass ``sha256=HEX`` to
verify against a digest you trust.

Lookup (:func:`resolve_checkpoint`): ``backbone.checkpoint`` if given; ``backbone.random_init=true`` gives
random weights; else ``<backbone.checkpoints_dir>/<file name>`` if it exists; else the backbone is refused
with one line naming the missing file and the ``download`` command. Backbones without an entry
(``litemedsam``: bundled; ``tiny_*``: fixed-seed test models) are not affected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bench.config import BackboneConfig, ConfigError

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
MOBILESAM_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/"
SAM_SOURCE = "facebookresearch/segment-anything README, 'Model Checkpoints'"
SAM2_SOURCE = "facebookresearch/sam2 checkpoints/download_ckpts.sh (SAM 2.1)"
MOBILESAM_SOURCE = "ChaoningZhang/MobileSAM repository, weights/mobile_sam.pt"


@dataclass(frozen=True)
class Weights:
    """One published checkpoint.

    Attributes:
        backbone: Registered backbone name.
        file: File name as published (and as stored in the checkpoints folder).
        url: Download address.
        source: Where the URL (and hash, if any) was taken from.
        sha256: Published SHA-256 hex digest, or None when none is published.
        size: Published size in bytes, or None when none is published.
    """

    backbone: str
    file: str
    url: str
    source: str
    sha256: Optional[str] = None
    size: Optional[int] = None


def _table(*entries: Weights) -> dict[str, Weights]:
    return {w.backbone: w for w in entries}


WEIGHTS: dict[str, Weights] = _table(
    Weights("sam_vit_b", "sam_vit_b_01ec64.pth", SAM_URL + "sam_vit_b_01ec64.pth", SAM_SOURCE),
    Weights("sam_vit_l", "sam_vit_l_0b3195.pth", SAM_URL + "sam_vit_l_0b3195.pth", SAM_SOURCE),
    Weights("sam_vit_h", "sam_vit_h_4b8939.pth", SAM_URL + "sam_vit_h_4b8939.pth", SAM_SOURCE),
    Weights("sam2_hiera_t", "sam2.1_hiera_tiny.pt", SAM2_URL + "sam2.1_hiera_tiny.pt", SAM2_SOURCE),
    Weights("sam2_hiera_s", "sam2.1_hiera_small.pt", SAM2_URL + "sam2.1_hiera_small.pt", SAM2_SOURCE),
    Weights("sam2_hiera_b_plus", "sam2.1_hiera_base_plus.pt", SAM2_URL + "sam2.1_hiera_base_plus.pt", SAM2_SOURCE),
    Weights("sam2_hiera_l", "sam2.1_hiera_large.pt", SAM2_URL + "sam2.1_hiera_large.pt", SAM2_SOURCE),
    Weights("mobilesam", "mobile_sam.pt", MOBILESAM_URL + "mobile_sam.pt", MOBILESAM_SOURCE),
)


def weights_for(name: str) -> Weights:
    """The table entry of backbone ``name``; ConfigError naming the backbones that have one."""
    if name not in WEIGHTS:
        raise ConfigError(f"no official checkpoint is listed for backbone {name!r}; listed: {', '.join(WEIGHTS)}")
    return WEIGHTS[name]


def default_path(name: str, checkpoints_dir: str | Path) -> Path:
    """Where ``download`` puts (and backbones look for) the checkpoint of ``name``."""
    return Path(checkpoints_dir) / weights_for(name).file


def download_hint(name: str, checkpoints_dir: str | Path) -> str:
    """The command that fetches the checkpoint of ``name`` into ``checkpoints_dir``."""
    extra = "" if str(checkpoints_dir) == BackboneConfig.checkpoints_dir else f" checkpoints_dir={checkpoints_dir}"
    return f"python run_benchmark.py download backbone={name}{extra}"


def resolve_checkpoint(cfg: BackboneConfig) -> Optional[str]:
    """The checkpoint file ``cfg`` uses, or None for random weights (see the module docstring).

    Raises:
        ConfigError: a listed backbone without a checkpoint and without ``random_init=true``.
    """
    if cfg.checkpoint and cfg.random_init:
        raise ConfigError(
            f"backbone {cfg.name}: backbone.checkpoint and backbone.random_init=true contradict each other"
        )
    if cfg.checkpoint:
        return cfg.checkpoint
    if cfg.name not in WEIGHTS or cfg.random_init:
        return None
    path = default_path(cfg.name, cfg.checkpoints_dir)
    if path.is_file():
        return str(path)
    hint = download_hint(cfg.name, cfg.checkpoints_dir)
    raise ConfigError(
        f"backbone {cfg.name} has no checkpoint: {path} not found; get it with `{hint}`"
        " (or set backbone.checkpoint=PATH; backbone.random_init=true for random weights)"
    )


def weights_table() -> str:
    """The table as Markdown (``download`` without arguments prints it)."""
    lines = ["| backbone | file | sha256 | size | source |", "|---|---|---|---|---|"]
    for w in WEIGHTS.values():
        digest = w.sha256 or "no published hash"
        size = f"{w.size} B" if w.size else "no published size"
        lines.append(f"| {w.backbone} | {w.file} | {digest} | {size} | {w.source} |")
    return "\n".join(lines)
