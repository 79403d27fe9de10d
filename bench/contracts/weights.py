"""The official checkpoints of the full-size backbones, and where a backbone finds its weights.

``WEIGHTS`` lists, per registered backbone, the file the authors publish and what identifies it. None of
the official sources publishes a SHA-256 (facebookresearch/segment-anything README "Model Checkpoints"
gives the three URLs only; facebookresearch/sam2 ``checkpoints/download_ckpts.sh`` the four SAM 2.1
URLs only; ChaoningZhang/MobileSAM ships ``weights/mobile_sam.pt`` in the repository). What is published:

* SAM: each file name ends in the first six hex digits of the file's MD5 (``sam_vit_b_01ec64.pth``:
  MD5 ``01ec64…``), so the name is a (24-bit) checksum;
* MobileSAM: the repository's git object id of ``weights/mobile_sam.pt`` (a SHA-1 over ``blob <size>\0``
  and the bytes; ``git ls-tree`` at 34bbbfd);
* sizes: not published by the authors; the SAM and SAM 2.1 sizes below are the servers' lengths as
  several independent projects record them (e.g. 375,042,383 B for ``sam_vit_b``).

``download`` checks each of these (:func:`check_file`), records the SHA-256 of what it received beside
the file (``<file>.sha256``) and says what it verified; ``sha256=HEX`` verifies against a digest you
trust instead.

Lookup (:func:`resolve_checkpoint`): ``backbone.checkpoint`` if given; ``backbone.random_init=true`` gives
random weights; else ``<backbone.checkpoints_dir>/<file name>`` if it exists; else the backbone is refused
with one line naming the missing file and the ``download`` command. Backbones without an entry
(``litemedsam``: bundled; ``tiny_*``: fixed-seed test models) are not affected.
"""

from __future__ import annotations

import hashlib
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
        size: Size in bytes (as served; see the module docstring), or None when unknown.
        md5_prefix: Leading hex digits of the file's MD5 that the official file name carries (SAM).
        git_blob_sha1: Git object id of the file in the official repository (MobileSAM).
    """

    backbone: str
    file: str
    url: str
    source: str
    sha256: Optional[str] = None
    size: Optional[int] = None
    md5_prefix: Optional[str] = None
    git_blob_sha1: Optional[str] = None


def _table(*entries: Weights) -> dict[str, Weights]:
    return {w.backbone: w for w in entries}


WEIGHTS: dict[str, Weights] = _table(
    Weights(
        "sam_vit_b",
        "sam_vit_b_01ec64.pth",
        SAM_URL + "sam_vit_b_01ec64.pth",
        SAM_SOURCE,
        size=375_042_383,
        md5_prefix="01ec64",
    ),
    Weights(
        "sam_vit_l",
        "sam_vit_l_0b3195.pth",
        SAM_URL + "sam_vit_l_0b3195.pth",
        SAM_SOURCE,
        size=1_249_524_607,
        md5_prefix="0b3195",
    ),
    Weights(
        "sam_vit_h",
        "sam_vit_h_4b8939.pth",
        SAM_URL + "sam_vit_h_4b8939.pth",
        SAM_SOURCE,
        size=2_564_550_879,
        md5_prefix="4b8939",
    ),
    Weights("sam2_hiera_t", "sam2.1_hiera_tiny.pt", SAM2_URL + "sam2.1_hiera_tiny.pt", SAM2_SOURCE, size=156_008_466),
    Weights("sam2_hiera_s", "sam2.1_hiera_small.pt", SAM2_URL + "sam2.1_hiera_small.pt", SAM2_SOURCE, size=184_416_285),
    Weights(
        "sam2_hiera_b_plus",
        "sam2.1_hiera_base_plus.pt",
        SAM2_URL + "sam2.1_hiera_base_plus.pt",
        SAM2_SOURCE,
        size=323_606_802,
    ),
    Weights("sam2_hiera_l", "sam2.1_hiera_large.pt", SAM2_URL + "sam2.1_hiera_large.pt", SAM2_SOURCE, size=898_083_611),
    Weights(
        "mobilesam",
        "mobile_sam.pt",
        MOBILESAM_URL + "mobile_sam.pt",
        MOBILESAM_SOURCE,
        git_blob_sha1="7ef2d090979fd9853adf17b7a99c8b94a1c5a6a7",
    ),
)


def check_file(entry: Weights, path: Path) -> list[str]:
    """Check ``path`` against what identifies ``entry``'s published file; returns the checks that passed.

    Raises:
        ValueError: naming the first check that failed.
    """
    passed = []
    size = path.stat().st_size
    if entry.size is not None:
        if size != entry.size:
            raise ValueError(f"{size} bytes, the published file has {entry.size}")
        passed.append(f"size {size} B")
    if entry.md5_prefix or entry.git_blob_sha1:
        from bench.fileio import hash_file  # bench.fileio imports torch; the weights table does not need it

        md5, blob = hashlib.md5(usedforsecurity=False), hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
        hash_file(path, md5, blob)
        if entry.md5_prefix:
            if not md5.hexdigest().startswith(entry.md5_prefix):
                raise ValueError(
                    f"MD5 {md5.hexdigest()} does not start with {entry.md5_prefix} (the official file name's)"
                )
            passed.append(f"MD5 prefix {entry.md5_prefix} of the file name")
        if entry.git_blob_sha1:
            if blob.hexdigest() != entry.git_blob_sha1:
                raise ValueError(f"git object id {blob.hexdigest()}, the repository's is {entry.git_blob_sha1}")
            passed.append(f"git object id {entry.git_blob_sha1[:12]} of the repository")
    return passed


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
    lines = ["| backbone | file | size | checked against | source |", "|---|---|---|---|---|"]
    for w in WEIGHTS.values():
        checks = [
            c
            for c, on in (
                ("size", w.size),
                ("SHA-256", w.sha256),
                ("MD5 prefix in the name", w.md5_prefix),
                ("git object id", w.git_blob_sha1),
            )
            if on
        ]
        size = f"{w.size} B" if w.size else "not recorded"
        lines.append(f"| {w.backbone} | {w.file} | {size} | {', '.join(checks) or 'nothing published'} | {w.source} |")
    return "\n".join(lines)
