"""Reading a host's files below a root prefix (`--root`).

Under `--root DIR` every absolute path is read below DIR, and an absolute symlink found there
(`/run/current-system -> /nix/store/...`) is resolved below DIR too. Store paths are immutable and
named by their content hash, so a store path absent below DIR is read from the local /nix/store
when it holds the same path: a fixture tree or snapshot need not copy the closure.

Non-file sources (D-Bus, sockets, nft) are read live only when the root is "/"; otherwise from
the captured files in DIR/.nixdrift/.

Every read of a file's content goes through one bounded reader (`Root.read_bytes`): the path is
resolved below the root, the file is opened without following a last symlink and without blocking,
it must be a regular file (a FIFO or a device is refused before it is opened), it must lie below the
root (or in the local store, see above) once open, and it is read to at most MAX_READ bytes. Under
`--root`, a file of the running kernel (procfs, sysfs) is refused: it describes this machine, not
the root. A refusal is an `UnsafeRead`, an OSError, so a collector's usual handling applies.

A collector that reads hundreds of files works on `root.for_scan()`: the same root with a memo of
what it looked up (links, resolved directories, the root's own real path, the kernel's devices)
that lives as long as that one value, i.e. one capture. The memo saves the lookups only: every
open is still checked on its descriptor (regular file, below the root, no kernel file), so a link
swapped in during the scan is refused as before.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nixdrift import scanindex

SNAPSHOT_DIR = ".nixdrift"
STORE = "/nix/store"
MAX_READ = 64 * 1024 * 1024  # per source: beyond it the source is refused, its category unavailable
_MAX_LINKS = 40
_CHUNK = 1024 * 1024
_KERNEL_TREES = ("/proc", "/sys")  # live kernel state: read from them on the live root only


class UnsafeRead(OSError):
    """A file nixdrift refuses to read: not a regular file, too large, outside the root, or live kernel state."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MiB"


def read_regular(real: str | os.PathLike[str], limit: int = MAX_READ, shown: str | None = None) -> bytes:
    """The bytes of a regular file on this machine, at most `limit` of them, never following a last symlink.

    The file is checked before it is opened (a FIFO would block, a device never ends) and again once
    open (it may have been replaced in between). `shown` is the name used in errors.
    """
    where = os.fspath(real)
    return _bounded(where, limit, shown or where, None)


def _bounded(where: str, limit: int, name: str, confine: Callable[[int, os.stat_result], None] | None) -> bytes:
    st = os.lstat(where)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeRead(errno.EINVAL, f"{_kind(st.st_mode)}, not a regular file", name)
    fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if confine is not None:
            confine(fd, st)
        return _read_fd(fd, st, limit, name)
    finally:
        os.close(fd)


def _read_fd(fd: int, before: os.stat_result, limit: int, name: str) -> bytes:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        raise UnsafeRead(errno.EINVAL, "replaced while it was opened", name)
    if st.st_size > limit:
        raise UnsafeRead(errno.EFBIG, f"{_mib(st.st_size)}, larger than the {_mib(limit)} read limit", name)
    chunks: list[bytes] = []
    total = 0
    while chunk := os.read(fd, min(_CHUNK, limit + 1 - total)):  # procfs files say size 0: read to EOF
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise UnsafeRead(errno.EFBIG, f"larger than the {_mib(limit)} read limit", name)
    return b"".join(chunks)


def _kernel_devices() -> frozenset[int]:
    """The devices of this machine's mounted /proc and /sys (a bare directory, where none is mounted,
    is on the root filesystem and does not count)."""
    devices: set[int] = set()
    try:
        top = os.stat("/").st_dev
    except OSError:
        return frozenset()
    for tree in _KERNEL_TREES:
        try:
            device = os.stat(tree).st_dev
        except OSError:
            continue
        if device != top:
            devices.add(device)
    return frozenset(devices)


def _inside(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


# Store paths never change once they exist, so what a component below /nix/store is (a link and its
# target, or not a link) is remembered across calls; everything else is looked up every time.
_STORE_LINKS: dict[tuple[str, str], str | None] = {}  # (prefix, host path) -> link target or None
_STORE_LINKS_MAX = 200_000
_STORE_PARENTS = frozenset(("/nix", STORE))  # walked through on every store path


class _ScanMemo:
    """What one scan looked up below its root (see `Root.for_scan`); never outlives the scan."""

    __slots__ = ("kernel", "links", "reals", "resolved", "tops")

    def __init__(self) -> None:
        self.links: dict[str, str | None] = {}  # host path -> link target, "" absent, None no link
        self.reals: dict[str, str] = {}  # store host path -> where it is read on this machine
        self.resolved: dict[str, tuple[str, int]] = {}  # path as asked -> (resolved, links followed)
        self.tops: dict[bool, tuple[str, ...]] = {}  # in the store or not -> real paths it may lie below
        self.kernel: frozenset[int] | None = None


@dataclass(frozen=True, slots=True)
class Root:
    prefix: Path = Path("/")
    _base: str = field(default="", compare=False, repr=False)  # prefix as a string, "" for "/"
    _memo: _ScanMemo | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        base = str(self.prefix).rstrip("/")
        object.__setattr__(self, "_base", base)

    def for_scan(self) -> Root:
        """This root with a fresh memo of its look-ups, for one capture (see the module's docstring)."""
        return Root(self.prefix, _memo=_ScanMemo())

    @classmethod
    def of(cls, path: str | os.PathLike[str] | None) -> Root:
        return cls(Path(path).absolute() if path else Path("/"))

    @property
    def is_live(self) -> bool:
        """True when this is the running machine itself (non-file sources may be queried)."""
        return self._base == ""

    def captured(self, name: str) -> Path:
        """Path of a captured non-file source in a snapshot (DIR/.nixdrift/NAME), for messages."""
        return self.prefix / SNAPSHOT_DIR / name

    def read_captured(self, name: str, limit: int = MAX_READ) -> bytes:
        """A captured non-file source (DIR/.nixdrift/NAME), read as safely as any host file.

        `snapshot` writes these as plain files in a plain directory: a symlink there is refused.
        """
        for where in (self.prefix / SNAPSHOT_DIR, self.captured(name)):
            if where.is_symlink():
                raise UnsafeRead(errno.EPERM, "a symlink, where a snapshot holds a plain file", str(where))
        return self.read_bytes(f"/{SNAPSHOT_DIR}/{name}", limit)

    def path(self, abs_path: str) -> Path:
        """The literal location of an absolute host path below the prefix (no link resolution)."""
        return Path(self._below(abs_path))

    def _below(self, abs_path: str) -> str:
        rel = abs_path.lstrip("/")
        return f"{self._base}/{rel}" if rel else (self._base or "/")

    def _real(self, host_path: str) -> str:
        if not (self._base and (host_path == STORE or host_path.startswith(STORE + "/"))):
            return self._below(host_path)
        memo = self._memo
        if memo is not None and (known := memo.reals.get(host_path)) is not None:
            return known
        found = self._lstat(host_path)
        return found[0] if found is not None else self._below(host_path)

    def _lstat(self, host_path: str) -> tuple[str, os.stat_result] | None:
        """Where a host path is read here (below the prefix; a store path absent there from the
        local store) and its lstat; None when it exists in neither."""
        below = self._below(host_path)
        in_store = host_path == STORE or host_path.startswith(STORE + "/")
        memo = self._memo
        known = memo.reals.get(host_path) if memo is not None and in_store else None
        if known is None and memo is not None and self._base and in_store:
            parent = host_path.rpartition("/")[0]
            if memo.reals.get(parent) == parent:  # a store path absent below the root: so is all it holds
                known = host_path
        for real in (known,) if known is not None else (below, host_path) if self._base and in_store else (below,):
            try:
                st = os.lstat(real)
            except OSError:
                continue
            if memo is not None and in_store:
                memo.reals[host_path] = real
            return real, st
        return None

    def _link(self, host_path: str) -> str | None:
        """The target of host_path when it is a symlink; "" when it does not exist; None otherwise."""
        in_store = host_path.startswith(STORE + "/") or host_path in _STORE_PARENTS
        key = (self._base, host_path)
        if in_store and key in _STORE_LINKS:
            scanindex.note_store(self._below(host_path), host_path)  # known from an earlier scan: a trace records it
            return _STORE_LINKS[key]
        memo = self._memo
        if memo is not None and host_path in memo.links:
            return memo.links[host_path]
        found = self._lstat(host_path)
        if found is None:
            target: str | None = ""
        else:
            target = os.readlink(found[0]) if stat.S_ISLNK(found[1].st_mode) else None
        if in_store and target != "" and len(_STORE_LINKS) < _STORE_LINKS_MAX:
            _STORE_LINKS[key] = target
        elif memo is not None:
            memo.links[host_path] = target
        return target

    def resolve(self, abs_path: str) -> str:
        """Resolve symlinks as the host would, returning the final *host* path.

        Each component is looked up below the prefix; absolute link targets restart at the
        prefix. Missing components are kept as they are (like `realpath -m`). With a scan's memo,
        the walk starts from the longest prefix of `abs_path` resolved before in this scan.
        """
        memo = self._memo
        if memo is not None and (known := memo.resolved.get(abs_path)) is not None:
            return known[0] or "/"
        parts = [p for p in abs_path.split("/") if p]
        current, hops, done = "", 0, 0
        if memo is not None:
            for n in range(len(parts), 0, -1):
                hit = memo.resolved.get("/" + "/".join(parts[:n]))
                if hit is not None:
                    (current, hops), done = hit, n
                    break
        stack = parts[done:]
        stack.reverse()  # the next component is at the end; link targets are pushed above the rest
        rest = len(stack)  # components of abs_path itself still on the stack
        while stack:
            part = stack.pop()
            rest = min(rest, len(stack))
            if part == "..":
                current = current.rsplit("/", 1)[0]
            elif part != ".":
                candidate = f"{current}/{part}"
                target = self._link(candidate)
                if target:
                    hops += 1
                    if hops > _MAX_LINKS:
                        raise OSError(f"too many levels of symbolic links: {abs_path}")
                    if target.startswith("/"):
                        current = ""
                    stack.extend(reversed([p for p in target.split("/") if p]))
                else:
                    current = candidate
            if memo is not None and len(stack) == rest:  # a prefix of abs_path is resolved
                memo.resolved["/" + "/".join(parts[: len(parts) - rest])] = (current, hops)
        return current or "/"

    def _locate(self, abs_path: str) -> str:
        return self._real(self.resolve(abs_path))

    def stat(self, abs_path: str) -> os.stat_result:
        """A host path's stat, its links resolved below the root (`open_path(...).stat()`)."""
        return os.stat(self._locate(abs_path))

    def real(self, host_path: str) -> Path:
        """Where a host path (already resolved or not) lives on this machine."""
        return Path(self._real(host_path))

    def open_path(self, abs_path: str) -> Path:
        """The on-disk location of a host path after resolving all its symlinks."""
        return Path(self._locate(abs_path))

    def readlink(self, abs_path: str) -> str | None:
        """A symlink's target as the host sees it, or None when it is not a symlink."""
        return self._link(abs_path) or None

    def read_bytes(self, abs_path: str, limit: int = MAX_READ) -> bytes:
        """A host file's bytes: resolved below the root, a regular file, at most `limit` bytes.

        Raises FileNotFoundError when it is absent and UnsafeRead (an OSError) when it is refused.
        """
        real = self._real(self.resolve(abs_path))
        shown = abs_path if self.is_live else f"{abs_path} below {self.prefix}"
        if self.is_live:
            return _bounded(real, limit, shown, None)
        return _bounded(real, limit, shown, lambda fd, st: self._confine(fd, st, real, shown))

    def _confine(self, fd: int, st: os.stat_result, real: str, shown: str) -> None:
        """Under `--root`: the open file lies below the root (or in the local store) and is no kernel file."""
        memo = self._memo
        kernel = memo.kernel if memo is not None else None
        if kernel is None:
            kernel = _kernel_devices()
            if memo is not None:
                memo.kernel = kernel
        if st.st_dev in kernel:
            raise UnsafeRead(errno.EPERM, "a file of the running kernel (procfs or sysfs), not of the root", shown)
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc: the path as resolved, with its directories' links followed
            opened = os.path.realpath(real)
        in_store = real == STORE or real.startswith(STORE + "/")
        tops = memo.tops.get(in_store) if memo is not None else None
        if tops is None:
            # a store path absent below the root is read from the local store
            tops = (os.path.realpath(self.prefix), *((os.path.realpath(STORE),) if in_store else ()))
            if memo is not None:
                memo.tops[in_store] = tops
        if not any(_inside(opened, top) for top in tops):
            raise UnsafeRead(errno.EPERM, f"leads outside the root (to {opened})", shown)

    def read_text(self, abs_path: str, limit: int = MAX_READ) -> str:
        """Text with undecodable bytes kept as surrogate escapes (never raises on bad bytes)."""
        return self.read_bytes(abs_path, limit).decode("utf-8", errors="surrogateescape")

    def exists(self, abs_path: str) -> bool:
        return self.open_path(abs_path).exists()
