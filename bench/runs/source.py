"""Which source ran: the git commit when the suite is a checkout, and in every case a digest of the source tree,
so that a source archive (``git archive``, GitHub's "Download ZIP", a Zenodo copy) records which code ran too.

The digest is SHA-256 over the sorted ``path NUL sha256(content)`` lines of the tracked files. In a checkout
the files are ``git ls-files`` with their working-tree contents (a dirty tree gives another digest, which is
right); in an archive they are the files on disk minus what the ``.gitignore`` files ignore, so the ``runs/``,
``.cache/`` and ``__pycache__/`` that running the suite creates do not count. :data:`ARCHIVAL` is the one file
``git archive`` rewrites (``export-subst`` in ``.gitattributes``: it writes the commit into it); it differs
between a clone and an archive and is left out of the digest. A clone and an archive of one commit give the
same digest.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator, Optional

REPO = Path(__file__).resolve().parents[2]
ARCHIVAL = ".git_archival.txt"
_COMMIT = re.compile(r"^commit:\s*([0-9a-f]{40})\s*$", re.M)


def git(root: Path, *args: str) -> Optional[str]:
    """``git -C root ARGS``'s stdout, or None when git is absent or fails (not a checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def archive_commit(root: Path) -> Optional[str]:
    """The commit ``git archive`` wrote into :data:`ARCHIVAL`; None in a checkout (the placeholder) or without it."""
    try:
        match = _COMMIT.search((root / ARCHIVAL).read_text())
    except (OSError, UnicodeDecodeError):
        return None
    return match.group(1) if match else None


def _is_checkout(root: Path) -> bool:
    top = git(root, "rev-parse", "--show-toplevel")
    return top is not None and Path(top.strip()).resolve() == root.resolve()


def source_files(root: Path) -> tuple[str, list[str]]:
    """``(kind, paths)``: ``"git"`` and ``git ls-files`` in a checkout, else ``"archive"`` and the files on disk
    that no ``.gitignore`` ignores; POSIX paths relative to ``root``, :data:`ARCHIVAL` left out."""
    listed = git(root, "ls-files", "-z") if _is_checkout(root) else None
    if listed is not None:
        kind, paths = "git", [p for p in listed.split("\0") if p and (root / p).is_file()]  # deleted files: gone
    else:
        kind, paths = "archive", list(_unignored(root))
    return kind, sorted(p for p in paths if p != ARCHIVAL)


def tree_digest(root: Path, paths: list[str]) -> str:
    """SHA-256 over ``path NUL sha256(content) LF`` of ``paths`` (sorted), read under ``root``."""
    h = hashlib.sha256()
    for rel in sorted(paths):
        p = root / rel
        data = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()  # git stores a link's target
        h.update(f"{rel}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    return h.hexdigest()


def source_state(root: Path = REPO) -> dict[str, Any]:
    """``{"kind": "git" | "archive", "digest": hex, "commit": hex or None}`` of the source tree at ``root``."""
    kind, paths = source_files(root)
    if kind == "git":
        commit = (git(root, "rev-parse", "HEAD") or "").strip() or None
    else:
        commit = archive_commit(root)
    return {"kind": kind, "digest": tree_digest(root, paths), "commit": commit}


@functools.lru_cache(maxsize=None)
def suite_source() -> dict[str, Any]:
    """:func:`source_state` of the suite itself, computed once per process (read the returned dict only)."""
    return source_state(REPO)


# --- .gitignore, for an archive: the patterns git applies, each file's rules relative to its folder -----------


def _pattern(line: str) -> Optional[tuple[re.Pattern[str], bool, bool]]:
    """``(regex, negated, directories_only)`` of one .gitignore line, None for blanks and comments."""
    line = line if line.endswith("\\ ") else line.rstrip()  # trailing spaces count only when escaped
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    line = line[1:] if negated else line
    line = line[1:] if line.startswith("\\") and line[1:2] in ("#", "!") else line
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    anchored = "/" in line
    line = line.lstrip("/")
    out, i = "", 0
    while i < len(line):
        if line.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif line.startswith("/**", i) and i + 3 == len(line):
            out, i = out + "/.*", i + 3
        elif line[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif line[i] == "?":
            out, i = out + "[^/]", i + 1
        elif line[i] == "[" and "]" in line[i + 2 :]:
            end = line.index("]", i + 2)
            body = line[i + 1 : end]
            out, i = out + "[" + ("^" + body[1:] if body.startswith("!") else body) + "]", end + 1
        else:
            out, i = out + re.escape(line[i]), i + 1
    return re.compile(("" if anchored else "(?:.*/)?") + out + r"\Z"), negated, dir_only


def _ignored(rules: list[tuple[str, list[Any]]], rel: str, is_dir: bool) -> bool:
    """Whether ``rel`` (relative to the root) is ignored: the deepest .gitignore with a matching rule decides,
    and within one file the last matching rule."""
    for base, patterns in reversed(rules):
        sub = rel[len(base) + 1 :] if base else rel
        for regex, negated, dir_only in reversed(patterns):
            if (is_dir or not dir_only) and regex.match(sub):
                return not negated
    return False


def _unignored(root: Path) -> Iterator[str]:
    """Files under ``root`` (not ``.git``) that no .gitignore ignores, relative POSIX paths."""
    rules: list[tuple[str, list[Any]]] = []
    for folder, dirs, files in os.walk(root):
        rel_dir = Path(folder).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        rules = [(b, p) for b, p in rules if not b or rel_dir == b or rel_dir.startswith(b + "/")]
        if ".gitignore" in files:
            text = (Path(folder) / ".gitignore").read_text(errors="replace")
            rules.append((rel_dir, [p for p in map(_pattern, text.splitlines()) if p]))
        join = (lambda n: f"{rel_dir}/{n}") if rel_dir else (lambda n: n)
        files += [d for d in dirs if (Path(folder) / d).is_symlink()]  # git stores a link to a folder as a file
        dirs[:] = sorted(d for d in dirs if d != ".git" and not _ignored(rules, join(d), True))
        for name in files:
            if name != ".git" and not _ignored(rules, join(name), False):
                yield join(name)
