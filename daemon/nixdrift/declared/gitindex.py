"""The identity of a local git flake without spawning git: HEAD plus the index, where every file
whose stat no longer matches its index entry is hashed from the working tree — what `git status`
computes, in a millisecond. Returns None for anything but the plain layout (a worktree or
submodule `.git` file, a conflict, an index version other than 2 or 3), and the caller then asks
git itself.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

_ENTRY = struct.Struct(">10I20sH")  # ctime s/ns, mtime s/ns, dev, ino, mode, uid, gid, size, sha1, flags
_EXTENDED = 0x4000
_NS = 1_000_000_000


def _ref(git: Path, name: str) -> str | None:
    loose = git / name
    if loose.is_file():
        return loose.read_text().strip()
    packed = git / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            oid, _, ref = line.partition(" ")
            if ref == name:
                return oid
    return None


def head(git: Path) -> str | None:
    """HEAD's commit, or None before the first commit."""
    text = (git / "HEAD").read_text().strip()
    if text.startswith("ref: "):
        return _ref(git, text[5:])
    return text or None


def identity(top: Path) -> str | None:
    git = top / ".git"
    try:
        if not git.is_dir():
            return None
        index = git / "index"
        data = index.read_bytes()
        index_mtime = os.stat(index).st_mtime_ns
        commit = head(git)
    except (OSError, UnicodeDecodeError):
        return None
    if data[:4] != b"DIRC" or len(data) < 12:
        return None
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3):
        return None
    digest = hashlib.sha256(f"{commit}\0".encode())
    pos = 12
    for _ in range(count):
        if pos + _ENTRY.size > len(data):
            return None
        *stat_fields, sha1, flags = _ENTRY.unpack_from(data, pos)
        if (flags >> 12) & 3:  # a merge conflict: let git describe it
            return None
        start = pos + _ENTRY.size + (2 if flags & _EXTENDED else 0)
        end = data.find(b"\0", start)
        if end < 0:
            return None
        name = data[start:end]
        pos += ((end - pos) // 8 + 1) * 8  # entries are NUL-padded to a multiple of 8 bytes
        digest.update(name + b"\0" + _content(top, name, stat_fields, sha1, index_mtime))
    return "gitindex:" + digest.hexdigest()


def _content(top: Path, name: bytes, fields: list[int], sha1: bytes, index_mtime: int) -> bytes:
    """The index's blob id when the file is as the index saw it, else a hash of what it holds now."""
    path = top / os.fsdecode(name)
    try:
        st = os.lstat(path)
    except OSError:
        return b"<deleted>"
    # as git does: mtime, ctime (which no one can set back), inode and size; and a file changed in
    # the same instant the index was written may look clean by stat, so that one is hashed
    ctime, mtime = fields[0] * _NS + fields[1], fields[2] * _NS + fields[3]
    same = (st.st_mtime_ns, st.st_ctime_ns, st.st_ino & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF) == (
        mtime, ctime, fields[5], fields[9])  # fmt: skip
    if same and st.st_mtime_ns < index_mtime:
        return sha1
    try:
        body = os.fsencode(os.readlink(path)) if os.path.islink(path) else path.read_bytes()
    except OSError:
        return b"<unreadable>"
    return hashlib.sha256(body).digest()
