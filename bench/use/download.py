"""``run_benchmark.py download``: official checkpoints and the public dataset archives, verified.

A file is streamed to a temporary file beside its destination with a progress bar, hashed while it
arrives, checked (complete transfer; SHA-256 when one is known or given), and only then renamed
atomically onto its destination, so a failed or interrupted download never leaves a file that looks
finished. The digest is written beside the file as ``<file>.sha256`` (``sha256sum`` format).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from bench.config import ConfigError
from bench.contracts.weights import WEIGHTS, check_file, default_path, weights_for
from bench.fileio import atomic_write, sha256_file

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60
ARCHIVE_URL = re.compile(r"https://automl-mm-bench\.s3\.amazonaws\.com/\S+?\.zip")
# datasets whose test split is inside the Conv-LoRA archive named in their source (COD10K's and
# CHAMELEON's test CSVs are not in camo_sem_seg.zip)
ARCHIVE_DATASETS = ("kvasir", "cvc_clinicdb", "isic2017", "camo", "leaf", "massachusetts_roads", "sbu")


class DownloadError(ConfigError):
    """A download that failed (HTTP error, interrupted transfer, hash mismatch); nothing was kept."""


@dataclass
class Fetched:
    path: Path
    sha256: str
    size: int
    verified: bool  # the digest matched a published or given one
    checks: list[str]  # what else identified the file (size, MD5 prefix, git object id)


def sha256_sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def fetch(
    url: str,
    dest: Path,
    sha256: Optional[str] = None,
    desc: str = "",
    verify: Optional[Callable[[Path], list[str]]] = None,
) -> Fetched:
    """Download ``url`` to ``dest`` (see the module docstring); DownloadError on any failure.

    ``verify`` checks the complete temporary file before the rename (ValueError = not the expected file)
    and returns the checks that passed."""
    want = sha256.lower() if sha256 else None
    if want is not None and not re.fullmatch(r"[0-9a-f]{64}", want):
        raise ConfigError(f"sha256={sha256!r} is not a 64-digit hex SHA-256 digest")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
            except urllib.error.HTTPError as err:
                raise DownloadError(f"download of {url} failed: HTTP {err.code} {err.reason}") from None
            except (urllib.error.URLError, OSError) as err:
                raise DownloadError(f"download of {url} failed: {getattr(err, 'reason', err)}") from None
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                with tqdm(total=total, unit="B", unit_scale=True, desc=desc or dest.name, leave=False) as bar:
                    while True:
                        try:
                            chunk = response.read(CHUNK)
                        except (OSError, http.client.HTTPException) as err:
                            raise DownloadError(
                                f"download of {url} interrupted after {received} bytes ({err.__class__.__name__})"
                            ) from None
                        if not chunk:
                            break
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
            if total is not None and received != total:
                raise DownloadError(f"download of {url} interrupted: received {received} of {total} bytes")
        got = digest.hexdigest()
        if want is not None and got != want:
            raise DownloadError(f"{url}: SHA-256 mismatch (expected {want}, got {got}); nothing was kept")
        checks = []
        if verify is not None:
            try:
                checks = verify(tmp)
            except ValueError as err:
                raise DownloadError(
                    f"{url} is not the published {dest.name}: {err}; nothing was kept"
                    " (sha256=HEX accepts a file you trust)"
                ) from None
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write(sha256_sidecar(dest), f"{got}  {dest.name}\n".encode())
    return Fetched(dest, got, received, verified=want is not None, checks=checks)


def _verified_text(result: Fetched, what: str) -> str:
    sidecar = sha256_sidecar(result.path).name
    if result.verified:
        check = "SHA-256 verified"
    elif result.checks:
        check = f"verified: {', '.join(result.checks)}; no published SHA-256, recorded in {sidecar}"
    else:
        check = f"not verified: {what} has no published hash; recorded in {sidecar}"
    return f"{result.path}\n  {result.size} bytes, sha256 {result.sha256} ({check})"


def download_backbone(name: str, checkpoints_dir: str, url: Optional[str] = None, sha256: Optional[str] = None) -> str:
    """Fetch the official checkpoint of ``name`` into ``checkpoints_dir``; returns the report text.

    A given ``sha256`` is the one check; otherwise what identifies the published file (size, the MD5 prefix
    of SAM's file names, MobileSAM's git object id: :func:`bench.contracts.weights.check_file`), whatever the URL."""
    entry = weights_for(name)
    dest = default_path(name, checkpoints_dir)
    known = sha256 or entry.sha256

    def verify(path: Path) -> list[str]:
        return [] if sha256 else check_file(entry, path)

    if dest.is_file():
        got = sha256_file(dest)
        if known and got != known.lower():
            raise DownloadError(f"{dest} exists but its SHA-256 is {got}, not {known}: delete it and download again")
        try:
            checks = verify(dest)
        except ValueError as err:
            raise DownloadError(
                f"{dest} exists but is not the published file: {err}; delete it and download again"
            ) from None
        return f"{dest}\n  already present, sha256 {got}" + (f" ({', '.join(checks)})" if checks else "")
    result = fetch(url or entry.url, dest, known, desc=entry.file, verify=verify)
    return _verified_text(result, entry.file)


def _extract(archive: Path, target: Path) -> int:
    """Unpack ``archive`` into ``target``; members that would land outside it are refused."""
    root = target.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for member in members:
                out = (root / member.filename).resolve()
                if out != root and root not in out.parents:
                    raise DownloadError(f"{archive}: member {member.filename!r} would be written outside {target}")
            zf.extractall(target)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{archive}: not a zip archive ({err})") from None
    return len(members)


def download_dataset(name: str, data_root: str, url: Optional[str] = None, sha256: Optional[str] = None) -> str:
    """Fetch and unpack the public Conv-LoRA archive of ``name`` under ``data_root``, then run ``prepare``.

    Datasets without a public archive raise ConfigError saying where to get them and where to put them.
    """
    from bench.contracts.dataset import dataset_tools

    checks = dataset_tools()
    spec = checks.real_spec(name)
    found = ARCHIVE_URL.search(spec.source)
    target_name = spec.folders[0]
    if url is None and (name not in ARCHIVE_DATASETS or found is None):
        raise ConfigError(
            f"{name} cannot be downloaded by the suite (no public archive with a direct URL holds all of it); "
            f"get it from: "
            f"{spec.source}; put it at {Path(data_root) / target_name}/ (README, 'Datasets', lists the layouts), "
            f"then check it with: python run_benchmark.py prepare dataset={name}"
        )
    url = url or found.group(0)  # type: ignore[union-attr]
    stem = Path(url.rsplit("/", 1)[-1]).stem
    if stem in spec.folders:
        target_name = stem
    archive = Path(data_root) / f"{stem}.zip"
    lines = []
    if archive.is_file() and sha256_sidecar(archive).is_file():
        lines.append(f"{archive}: already downloaded ({sha256_sidecar(archive).read_text().split()[0]})")
    else:
        lines.append(_verified_text(fetch(url, archive, sha256, desc=archive.name), archive.name))
    target = Path(data_root) / target_name
    count = _extract(archive, target)
    lines.append(f"extracted {count} entries into {target}")
    report = checks.check_copy(name, target, data_root)
    if not report.ok:
        raise ConfigError("\n".join(lines) + f"\nprepare {name}: {target} is not ready\n{report.text()}")
    return "\n".join(lines + [report.text()])


def listing() -> str:
    """What ``download`` can fetch (printed without arguments)."""
    from bench.contracts.weights import weights_table

    return (
        "usage: download backbone=NAME [url=URL] [sha256=HEX] [checkpoints_dir=DIR]\n"
        "       download dataset=NAME [url=URL] [sha256=HEX] [data.root=DIR]\n"
        f"backbones: {', '.join(WEIGHTS)}\n{weights_table()}\n"
        f"datasets with a public archive: {', '.join(ARCHIVE_DATASETS)}"
    )
