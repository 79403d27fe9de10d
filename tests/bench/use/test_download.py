"""``download``: served from a loopback HTTP server started here (no other network), and the refusal of a
full-size backbone without weights."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from bench.app.cli import main
from bench.backbones import build_backbone
from bench.backbones.tiny import build_tiny_sam
from bench.config import BackboneConfig, ConfigError
from bench.contracts.weights import WEIGHTS, resolve_checkpoint
from bench.use.download import DownloadError, download_backbone, download_dataset, fetch
from tests.datasets.real_fixtures import polyp_csv

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, more than one read chunk


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/truncated":  # announces the whole payload, sends a third, closes
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "not here")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.files
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_good_hash_is_verified_renamed_and_recorded(server, tmp_path):
    base, files = server
    files["/w.pt"] = PAYLOAD
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    result = fetch(f"{base}/w.pt", tmp_path / "w.pt", digest.upper())
    assert result.verified and result.sha256 == digest and result.size == len(PAYLOAD)
    assert (tmp_path / "w.pt").read_bytes() == PAYLOAD
    assert (tmp_path / "w.pt.sha256").read_text() == f"{digest}  w.pt\n"
    assert _leftovers(tmp_path) == ["w.pt", "w.pt.sha256"]  # no temporary file left


def test_bad_hash_is_an_error_and_leaves_no_file(server, tmp_path):
    base, files = server
    files["/w.pt"] = PAYLOAD
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        fetch(f"{base}/w.pt", tmp_path / "w.pt", "0" * 64)
    assert _leftovers(tmp_path) == []


def test_interrupted_transfer_is_an_error_and_leaves_no_file(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="interrupted"):
        fetch(f"{base}/truncated", tmp_path / "w.pt")
    assert _leftovers(tmp_path) == []


def test_404_is_a_one_line_error(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        fetch(f"{base}/nothing.pt", tmp_path / "w.pt")
    assert "\n" not in str(err.value)
    assert _leftovers(tmp_path) == []


def test_malformed_sha256_is_refused_before_downloading(server, tmp_path):
    base, _ = server
    with pytest.raises(ConfigError, match="not a 64-digit"):
        fetch(f"{base}/w.pt", tmp_path / "w.pt", "abc")
    assert _leftovers(tmp_path) == []


def test_download_command_puts_the_checkpoint_where_the_backbone_finds_it(server, tmp_path, capsys):
    """A state dict in the official SAM layout, fetched under the official file name, is what a
    ``sam_vit_b``-style lookup resolves; the command prints the path and the digest."""
    base, files = server
    buf = io.BytesIO()
    torch.save(build_tiny_sam(BackboneConfig(name="tiny_sam")).state_dict(), buf)
    files["/sam.pth"] = buf.getvalue()
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    code = main(
        ["download", "backbone=sam_vit_b", f"url={base}/sam.pth", f"sha256={digest}", f"checkpoints_dir={tmp_path}"]
    )
    out = capsys.readouterr().out
    target = tmp_path / WEIGHTS["sam_vit_b"].file
    assert code == 0 and str(target) in out and digest in out and "SHA-256 verified" in out
    assert resolve_checkpoint(BackboneConfig(name="sam_vit_b", checkpoints_dir=str(tmp_path))) == str(target)
    # a second call finds the file and does not download again
    del files["/sam.pth"]
    assert "already present" in download_backbone("sam_vit_b", str(tmp_path), f"{base}/sam.pth", digest)
    # without sha256= the file is checked against the published one: a 2-kB test model is not it
    with pytest.raises(DownloadError, match="not the published file: .* bytes, the published file has 375042383"):
        download_backbone("sam_vit_b", str(tmp_path))


def _published(monkeypatch, name: str, **identity) -> None:
    """Make the table entry of ``name`` describe a test payload (the real entries describe GB files)."""
    fields = {"size": None, "md5_prefix": None, "git_blob_sha1": None, **identity}
    monkeypatch.setitem(WEIGHTS, name, dataclasses.replace(WEIGHTS[name], **fields))


def test_download_checks_size_and_the_md5_prefix_of_sams_file_names(server, tmp_path, monkeypatch):
    base, files = server
    files["/s.pth"] = PAYLOAD
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    _published(monkeypatch, "sam_vit_b", size=len(PAYLOAD), md5_prefix=md5[:6])
    text = download_backbone("sam_vit_b", str(tmp_path), url=f"{base}/s.pth")
    assert f"verified: size {len(PAYLOAD)} B, MD5 prefix {md5[:6]}" in text
    assert hashlib.sha256(PAYLOAD).hexdigest() in text and (tmp_path / "sam_vit_b_01ec64.pth.sha256").is_file()
    for wrong, message in (
        ({"size": len(PAYLOAD) + 1}, "bytes, the published file has"),
        (
            {"size": len(PAYLOAD), "md5_prefix": "ffffff" if md5[:6] != "ffffff" else "000000"},
            "does not start with",
        ),
    ):
        folder = tmp_path / message.split()[0]
        _published(monkeypatch, "sam_vit_b", **wrong)
        with pytest.raises(DownloadError, match=f"is not the published sam_vit_b_01ec64.pth: .*{message}"):
            download_backbone("sam_vit_b", str(folder), url=f"{base}/s.pth")
        assert _leftovers(folder) == []


def test_mobilesam_is_checked_against_the_repositorys_git_object_id(server, tmp_path, monkeypatch):
    """The id is computed here by git itself (``git hash-object``), independently of check_file."""
    base, files = server
    files["/m.pt"] = PAYLOAD
    (tmp_path / "payload").write_bytes(PAYLOAD)
    blob = subprocess.run(["git", "hash-object", str(tmp_path / "payload")], capture_output=True, text=True, check=True)
    _published(monkeypatch, "mobilesam", git_blob_sha1=blob.stdout.strip())
    text = download_backbone("mobilesam", str(tmp_path / "ok"), url=f"{base}/m.pt")
    assert f"git object id {blob.stdout.strip()[:12]}" in text
    files["/other.pt"] = PAYLOAD[::-1]
    with pytest.raises(DownloadError, match="git object id .*, the repository's is"):
        download_backbone("mobilesam", str(tmp_path / "bad"), url=f"{base}/other.pt")
    assert _leftovers(tmp_path / "bad") == []
    # sha256= replaces the published checks: a file you trust is accepted
    good = hashlib.sha256(PAYLOAD[::-1]).hexdigest()
    assert "SHA-256 verified" in download_backbone("mobilesam", str(tmp_path / "bad"), f"{base}/other.pt", good)


def test_download_with_nothing_published_says_it_is_unverified(server, tmp_path, monkeypatch):
    base, files = server
    files["/m.pt"] = PAYLOAD
    _published(monkeypatch, "mobilesam", git_blob_sha1=None)
    text = download_backbone("mobilesam", str(tmp_path), url=f"{base}/m.pt")
    assert "not verified" in text and hashlib.sha256(PAYLOAD).hexdigest() in text
    assert (tmp_path / "mobile_sam.pt.sha256").is_file()


def test_the_weights_table_has_a_size_or_an_object_id_for_every_official_file():
    for entry in WEIGHTS.values():
        assert entry.size or entry.git_blob_sha1, entry.backbone
        if entry.md5_prefix:  # SAM: the name's last six hex digits are the MD5 prefix
            assert entry.file.endswith(f"_{entry.md5_prefix}.pth")


def test_dataset_archive_is_downloaded_extracted_and_prepared(server, tmp_path):
    src = tmp_path / "src"
    polyp_csv(src)  # writes src/polyp/polyp/{train,val,test_*}.csv + images
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted((src / "polyp").rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src / "polyp"))
    base, files = server
    files["/polyp.zip"] = buf.getvalue()
    root = tmp_path / "data"
    text = download_dataset("kvasir", str(root), url=f"{base}/polyp.zip")
    assert "OK: ready to use" in text and "convlora_csv" in text
    assert (root / "polyp.zip.sha256").read_text().split()[0] == hashlib.sha256(buf.getvalue()).hexdigest()
    assert (root / "polyp" / "polyp" / "train.csv").is_file()


def test_gated_dataset_says_where_to_get_it_and_where_to_put_it(tmp_path):
    with pytest.raises(ConfigError) as err:
        download_dataset("cod10k", str(tmp_path))
    text = str(err.value)
    assert "dengpingfan.github.io" in text and str(tmp_path / "cod") in text and "prepare dataset=cod10k" in text


def test_checkpointless_full_size_backbone_is_refused_before_any_run_directory(tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(
        [
            "run",
            "sweep=smoke",
            "backbone=sam_vit_b",
            f"runs_dir={runs}",
            "launcher=inline",
            f"backbone.checkpoints_dir={tmp_path}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and not runs.exists()
    assert err.count("\n") == 1 and "sam_vit_b_01ec64.pth not found" in err
    assert "python run_benchmark.py download backbone=sam_vit_b" in err


def test_random_weights_only_on_request():
    with pytest.raises(ConfigError, match="download backbone=sam2_hiera_t"):
        build_backbone(BackboneConfig(name="sam2_hiera_t", checkpoints_dir="/nonexistent"))
    assert resolve_checkpoint(BackboneConfig(name="sam_vit_h", random_init=True)) is None
    with pytest.raises(ConfigError, match="contradict"):
        resolve_checkpoint(BackboneConfig(name="sam_vit_b", checkpoint="x.pth", random_init=True))
    assert resolve_checkpoint(BackboneConfig(name="tiny_sam")) is None  # test backbones need no file
