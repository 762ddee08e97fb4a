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
from dataclasses import dataclass
from pathlib import Path

SNAPSHOT_DIR = ".nixdrift"
STORE = "/nix/store"
_MAX_LINKS = 40


@dataclass(frozen=True, slots=True)
class Root:
    prefix: Path = Path("/")

    @classmethod
    def of(cls, path: str | os.PathLike[str] | None) -> Root:
        return cls(Path(path).absolute() if path else Path("/"))

    @property
    def is_live(self) -> bool:
        """True when this is the running machine itself (non-file sources may be queried)."""
        return self.prefix == Path("/")

    def captured(self, name: str) -> Path:
        """Path of a captured non-file source in a snapshot (DIR/.nixdrift/NAME)."""
        return self.prefix / SNAPSHOT_DIR / name

    def path(self, abs_path: str) -> Path:
        """The literal location of an absolute host path below the prefix (no link resolution)."""
        rel = abs_path.lstrip("/")
        return self.prefix / rel if rel else self.prefix

    def _store_fallback(self, host_path: str) -> Path | None:
        if host_path == STORE or host_path.startswith(STORE + "/"):
            local = Path(host_path)
            if not self.is_live and os.path.lexists(local):
                return local
        return None

    def resolve(self, abs_path: str) -> str:
        """Resolve symlinks as the host would, returning the final *host* path.

        Each component is looked up below the prefix; absolute link targets restart at the
        prefix. Missing components are kept as they are (like `realpath -m`).
        """
        parts = [p for p in abs_path.split("/") if p]
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = "/" + "/".join([*resolved, part])
            real = self.real(candidate)
            try:
                st = os.lstat(real)
            except OSError:
                resolved.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_LINKS:
                    raise OSError(f"too many levels of symbolic links: {abs_path}")
                target = os.readlink(real)
                target_parts = [p for p in target.split("/") if p]
                if target.startswith("/"):
                    resolved = []
                parts = target_parts + parts
                continue
            resolved.append(part)
        return "/" + "/".join(resolved)

    def real(self, host_path: str) -> Path:
        """Where a host path (already resolved or not) lives on this machine."""
        below = self.path(host_path)
        if os.path.lexists(below):
            return below
        fallback = self._store_fallback(host_path)
        return fallback if fallback is not None else below

    def open_path(self, abs_path: str) -> Path:
        """The on-disk location of a host path after resolving all its symlinks."""
        return self.real(self.resolve(abs_path))

    def readlink(self, abs_path: str) -> str | None:
        """A symlink's target as the host sees it, or None when it is not a symlink."""
        try:
            return os.readlink(self.real(abs_path))
        except OSError:
            return None

    def read_bytes(self, abs_path: str) -> bytes:
        return self.open_path(abs_path).read_bytes()

    def read_text(self, abs_path: str) -> str:
        """Text with undecodable bytes kept as surrogate escapes (never raises on bad bytes)."""
        return self.read_bytes(abs_path).decode("utf-8", errors="surrogateescape")

    def exists(self, abs_path: str) -> bool:
        return self.open_path(abs_path).exists()
