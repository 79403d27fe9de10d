"""The source digest: a clone and a ``git archive`` of one commit give the same digest (also after the suite
ran there and left runs/, .cache/, __pycache__), one changed byte gives another; .gitignore rules as git reads them."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bench.runs.source import ARCHIVAL, REPO, _unignored, git, source_state, suite_source


def _run(*args: str, **kw) -> None:
    subprocess.run(args, check=True, capture_output=True, **kw)


@pytest.fixture()
def clone_and_archive(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    head = git(REPO, "rev-parse", "HEAD")
    if head is None or suite_source()["kind"] != "git":
        pytest.skip("the suite is not a git checkout here (a source archive): nothing to clone")
    clone, archive = tmp_path / "clone", tmp_path / "archive"
    _run("git", "clone", "-q", "--no-hardlinks", "--no-checkout", str(REPO), str(clone))
    _run("git", "-C", str(clone), "checkout", "-q", head.strip())
    archive.mkdir()
    tar = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], check=True, capture_output=True).stdout
    _run("tar", "-x", "-C", str(archive), input=tar)
    return head.strip(), clone, archive


def test_a_clone_and_an_archive_of_one_commit_give_one_digest_and_a_changed_byte_another(clone_and_archive):
    head, clone, archive = clone_and_archive
    for root in (clone, archive):  # what running the suite leaves behind (all ignored by .gitignore)
        for junk in ("runs/x/metrics.json", ".cache/y", "bench/__pycache__/z.pyc", ".pytest_cache/v", "a.egg-info/t"):
            (root / junk).parent.mkdir(parents=True, exist_ok=True)
            (root / junk).write_text("junk")
        (root / ".ruff_cache").mkdir()
        (root / ".ruff_cache" / ".gitignore").write_text("*\n")  # ignored by its own nested .gitignore
        (root / ".ruff_cache" / "c").write_text("junk")
    from_clone, from_archive = source_state(clone), source_state(archive)
    assert from_clone == {"kind": "git", "digest": from_clone["digest"], "commit": head}
    assert from_archive == {"kind": "archive", "digest": from_clone["digest"], "commit": head}  # via export-subst
    assert "$Format" in (clone / ARCHIVAL).read_text() and head in (archive / ARCHIVAL).read_text()
    readme = archive / "README.md"
    readme.write_bytes(readme.read_bytes() + b" ")
    assert source_state(archive)["digest"] != from_clone["digest"]
    (clone / "README.md").write_bytes(readme.read_bytes())  # the same change in the clone: a dirty tree
    assert source_state(clone)["digest"] == source_state(archive)["digest"]


def test_gitignore_rules_anchoring_folders_negation_and_nesting(tmp_path):
    (tmp_path / ".gitignore").write_text("# comment\n/top/\n*.log\n!keep.log\nbuild/\ndocs/**/gen\n")
    files = ["top/a", "sub/top/b", "x.log", "sub/keep.log", "sub/build/c", "build", "docs/gen", "docs/a/b/gen", "ok"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".gitignore").write_text("*.tmp\n")
    files += ["sub/y.tmp", "y.tmp"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text(f)
    kept = set(_unignored(tmp_path))
    assert kept == {".gitignore", "sub/.gitignore", "sub/top/b", "sub/keep.log", "build", "ok", "y.tmp"}
