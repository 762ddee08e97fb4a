"""Reading a host's files below a root prefix (`--root`).

Under `--root DIR` every absolute path is read below DIR, and an absolute symlink found there
(`/run/current-system -> /nix/store/...`) is resolved below DIR too. Store paths are immutable and
named by their content hash, so a store path absent below DIR is read from the local /nix/store
when it holds the same path: a fixture tree or snapshot need not copy the closure.

Non-file sources (D-Bus, sockets, nft) are read live only when the root is "/"; otherwise from
the captured files in DIR/.nixdrift/.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

SNAPSHOT_DIR = ".nixdrift"
STORE = "/nix/store"
_MAX_LINKS = 40


# Store paths never change once they exist, so what a component below /nix/store is (a link and its
# target, or not a link) is remembered across calls; everything else is looked up every time.
_STORE_LINKS: dict[tuple[str, str], str | None] = {}  # (prefix, host path) -> link target or None
_STORE_LINKS_MAX = 200_000
_STORE_PARENTS = frozenset(("/nix", STORE))  # walked through on every store path


@dataclass(frozen=True, slots=True)
class Root:
    prefix: Path = Path("/")
    _base: str = field(default="", compare=False, repr=False)  # prefix as a string, "" for "/"

    def __post_init__(self) -> None:
        base = str(self.prefix).rstrip("/")
        object.__setattr__(self, "_base", base)

    @classmethod
    def of(cls, path: str | os.PathLike[str] | None) -> Root:
        return cls(Path(path).absolute() if path else Path("/"))

    @property
    def is_live(self) -> bool:
        """True when this is the running machine itself (non-file sources may be queried)."""
        return self._base == ""

    def captured(self, name: str) -> Path:
        """Path of a captured non-file source in a snapshot (DIR/.nixdrift/NAME)."""
        return self.prefix / SNAPSHOT_DIR / name

    def path(self, abs_path: str) -> Path:
        """The literal location of an absolute host path below the prefix (no link resolution)."""
        return Path(self._below(abs_path))

    def _below(self, abs_path: str) -> str:
        rel = abs_path.lstrip("/")
        return f"{self._base}/{rel}" if rel else (self._base or "/")

    def _real(self, host_path: str) -> str:
        below = self._below(host_path)
        in_store = host_path == STORE or host_path.startswith(STORE + "/")
        if self._base and in_store and not os.path.lexists(below) and os.path.lexists(host_path):
            return host_path
        return below

    def _link(self, host_path: str) -> str | None:
        """The target of host_path when it is a symlink; "" when it does not exist; None otherwise."""
        in_store = host_path.startswith(STORE + "/") or host_path in _STORE_PARENTS
        key = (self._base, host_path)
        if in_store and key in _STORE_LINKS:
            return _STORE_LINKS[key]
        real = self._real(host_path)
        try:
            st = os.lstat(real)
        except OSError:
            return ""
        target = os.readlink(real) if stat.S_ISLNK(st.st_mode) else None
        if in_store and len(_STORE_LINKS) < _STORE_LINKS_MAX:
            _STORE_LINKS[key] = target
        return target

    def resolve(self, abs_path: str) -> str:
        """Resolve symlinks as the host would, returning the final *host* path.

        Each component is looked up below the prefix; absolute link targets restart at the
        prefix. Missing components are kept as they are (like `realpath -m`).
        """
        parts = [p for p in abs_path.split("/") if p]
        parts.reverse()  # a stack: the next component is at the end
        current = ""
        hops = 0
        while parts:
            part = parts.pop()
            if part == ".":
                continue
            if part == "..":
                current = current.rsplit("/", 1)[0]
                continue
            candidate = f"{current}/{part}"
            target = self._link(candidate)
            if target:
                hops += 1
                if hops > _MAX_LINKS:
                    raise OSError(f"too many levels of symbolic links: {abs_path}")
                if target.startswith("/"):
                    current = ""
                parts.extend(reversed([p for p in target.split("/") if p]))
                continue
            current = candidate
        return current or "/"

    def real(self, host_path: str) -> Path:
        """Where a host path (already resolved or not) lives on this machine."""
        return Path(self._real(host_path))

    def open_path(self, abs_path: str) -> Path:
        """The on-disk location of a host path after resolving all its symlinks."""
        return self.real(self.resolve(abs_path))

    def readlink(self, abs_path: str) -> str | None:
        """A symlink's target as the host sees it, or None when it is not a symlink."""
        return self._link(abs_path) or None

    def read_bytes(self, abs_path: str) -> bytes:
        return self.open_path(abs_path).read_bytes()

    def read_text(self, abs_path: str) -> str:
        """Text with undecodable bytes kept as surrogate escapes (never raises on bad bytes)."""
        return self.read_bytes(abs_path).decode("utf-8", errors="surrogateescape")

    def exists(self, abs_path: str) -> bool:
        return self.open_path(abs_path).exists()
