"""Files a snapshot holds by digest only: DIR/.nixdrift/digests.json.

`nixdrift snapshot` never copies a file whose content no comparison reads (everything below /etc
that is not passwd, group, shadow, hostname, resolv.conf, ...): it writes an empty file of the same
mode in its place and records here what the comparison needs instead, by host path:
`{"sha256": hex or null (larger than the hash limit), "size", "mode", "uid", "gid"}`. The unit files
it reduces (Environment= and Exec*= values as digests) are recorded the same way, with the digest of
the original file. The etc and services collectors read these records where a file is held, so
`check --root SNAPSHOT` gives the findings a check of the host gave.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nixdrift.rootfs import SNAPSHOT_DIR, Root

DIGESTS_FILE = "digests.json"


class DamagedDigests(OSError):
    """digests.json is there but cannot be read or is not a record of held files: no verdict."""


@dataclass(frozen=True, slots=True)
class Held:
    """What the snapshot kept of a file whose content stayed on the host."""

    sha256: str | None
    size: int
    mode: int  # permission bits
    uid: int
    gid: int

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "mode": self.mode, "uid": self.uid, "gid": self.gid}

    @classmethod
    def from_json(cls, data: Any) -> Held:
        if not isinstance(data, dict):
            raise ValueError("not an object")
        sha = data.get("sha256")
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
            raise ValueError(f"sha256 is not a digest: {str(sha)[:70]!r}")
        numbers = [data.get(k) for k in ("size", "mode", "uid", "gid")]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            raise ValueError("size, mode, uid and gid must be whole numbers")
        size, mode, uid, gid = (int(n) for n in numbers)  # type: ignore[arg-type]
        return cls(sha, size, mode, uid, gid)


def parse(text: str) -> dict[str, Held]:
    """The records of a digests.json; ValueError naming the first bad entry."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON (cut short?): {str(exc)[:120]}") from None
    if not isinstance(doc, dict):
        raise ValueError("not an object of host paths")
    held: dict[str, Held] = {}
    for path, entry in doc.items():
        try:
            held[path] = Held.from_json(entry)
        except ValueError as exc:
            raise ValueError(f"{path[:200]!r}: {exc}") from None
    return held


_CACHE: dict[tuple[str, int, int, int], Mapping[str, Held]] = {}


def load(root: Root) -> Mapping[str, Held]:
    """The held files of the snapshot at `root`: empty on the live root or when it holds none.

    DamagedDigests (an OSError) when the file is there but unreadable or damaged: a collector must
    then not compare the empty files standing in for the held ones.
    """
    if root.is_live:
        return {}
    host_path = f"/{SNAPSHOT_DIR}/{DIGESTS_FILE}"
    try:
        st = root.path(host_path).lstat()
    except FileNotFoundError:
        return {}
    key = (str(root.prefix), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _CACHE:
        return _CACHE[key]
    try:
        text = root.read_bytes(host_path).decode("utf-8", errors="surrogateescape")
        held = parse(text)
    except (OSError, ValueError) as exc:
        shown = root.prefix / SNAPSHOT_DIR / DIGESTS_FILE
        raise DamagedDigests(errno.EINVAL, f"{shown} cannot be read: {exc}") from None
    if len(_CACHE) > 16:
        _CACHE.clear()
    _CACHE[key] = held
    return held


def held(root: Root, host_path: str) -> Held | None:
    """The record of one file (a host path as resolved below the root), or None when it is kept whole."""
    return load(root).get(host_path) if not root.is_live else None
