"""The manifest of a traced scan (`nixdrift.scanindex`): the stats of every input it recorded,
taken once the scan is done (the docstring there says why that is sound), or NotIndexable.

Apart from `scanindex` so that the quick path, which only validates answers, never loads it.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

from nixdrift import scanindex
from nixdrift.scanindex import ENV_NAMES, ENV_PREFIXES, FORMAT, STORE, Sig, path_sig, rows_digest, stat_sig

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

_KERNEL_TREES = ("/proc", "/sys")
_KERNEL_BELOW = tuple(f"{t}/" for t in _KERNEL_TREES)
_OWN_FDS = "/proc/self/fd/"
_os_lstat = scanindex.REAL_LSTAT  # never a trace's wrapper
_os_stat = scanindex.REAL_STAT


class NotIndexable(Exception):
    """The scan used something its inputs cannot vouch for (the message says what)."""


def build(trace: scanindex.Trace) -> dict[str, Any]:
    """The manifest's document: the trace's inputs with their stats now."""
    return Builder(trace).build()


def _store_top(path: str) -> str | None:
    """The top store path holding `path` (below a root prefix or not), or None."""
    at = path.find(STORE)
    if at < 0:
        return path if path.endswith(STORE[:-1]) else None  # the store directory itself: only that it exists
    end = path.find("/", at + len(STORE))
    return path if end < 0 else path[:end]


def _lstat_or_none(path: str) -> os.stat_result | None:
    try:
        return _os_lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise NotIndexable(f"{path}: cannot stat ({exc.strerror or exc})") from None


def _dir_rows(path: str) -> list[tuple[Any, ...]] | None:
    """The entries of a directory with their lstat, (name, *sig); None when it is absent."""
    try:
        with os.scandir(path) as it:
            return [(entry.name, *stat_sig(entry.stat(follow_symlinks=False))) for entry in it]
    except (FileNotFoundError, NotADirectoryError):
        return None


class Builder:
    """The stats of a trace's inputs, taken now (see the module's docstring for why that is sound)."""

    def __init__(self, trace: scanindex.Trace) -> None:
        self.trace = trace
        self.racy_after = trace.started_ns - scanindex.RACY_NS
        self.kernel = _kernel_devices()
        self.store: dict[str, bool] = {}
        self.dirs: dict[str, list[Any]] = {}
        self.files: dict[str, list[Any]] = {}
        self.entries: dict[str, Sig] = {}  # path -> lstat, for every entry of a listed directory
        self.count = 0
        self.skip_exact = frozenset(trace.ignored)
        self.skip_below = tuple(f"{top}/" for top in trace.ignored)

    def _skip(self, path: str) -> bool:
        return path in self.skip_exact or path.startswith(self.skip_below)

    def _check(self, path: str, sig: Sig) -> None:
        if sig[0] in self.kernel:
            raise NotIndexable(f"read {path}, a file of the running kernel")
        if max(sig[3], sig[4]) > self.racy_after:
            raise NotIndexable(f"{path} changed within {scanindex.RACY_NS // 1_000_000_000} s of the scan")
        self.count += 1
        if self.count > scanindex.MAX_INPUTS:
            raise NotIndexable(f"more than {scanindex.MAX_INPUTS} inputs")

    def _in_store(self, path: str) -> bool:
        top = _store_top(path)
        if top is None:
            return False
        if top not in self.store:
            self.store[top] = os.path.lexists(top)
        return True

    def _kernel_path(self, path: str) -> bool:
        return path in _KERNEL_TREES or path.startswith(_KERNEL_BELOW)

    def _outside_store(self, paths: Iterable[str]) -> Iterator[str]:
        """The paths (normalised) that are not in a store; the top store path of each that is, noted."""
        store, lexists = self.store, os.path.lexists
        for path in map(_norm, paths):
            at = path.find(STORE)
            if at < 0 and not path.endswith(STORE[:-1]):
                yield path
                continue
            end = path.find("/", at + len(STORE)) if at >= 0 else -1
            top = path if end < 0 else path[:end]
            if top not in store:
                store[top] = lexists(top)

    def add_dir(self, path: str) -> list[tuple[Any, ...]] | None:
        if path in self.dirs or self._skip(path) or self._in_store(path):
            return None
        if self._kernel_path(path):
            raise NotIndexable(f"listed {path}, a directory of the running kernel")
        own = _lstat_or_none(path)
        rows = _dir_rows(path) if own is not None and stat.S_ISDIR(own.st_mode) else None
        if own is not None:
            self._check(path, stat_sig(own))
        for row in rows or ():
            child = f"{path.rstrip('/')}/{row[0]}"
            sig: Sig = row[1:]
            self._check(child, sig)
            self.entries[child] = sig
        self.dirs[path] = [list(stat_sig(own)) if own is not None else None, rows_digest(rows)]
        return rows

    def add_tree(self, top: str) -> None:
        stack = [top]
        while stack:
            path = stack.pop()
            rows = self.add_dir(path)
            for row in rows or ():
                if stat.S_ISDIR(row[6]) and not (row[0] == "objects" and path.endswith("/.git")):
                    stack.append(f"{path.rstrip('/')}/{row[0]}")

    def add_file(self, path: str, follow: bool) -> None:
        if self._in_store(path) or path in _KERNEL_TREES or path.startswith(_OWN_FDS) or self._skip(path):
            return  # where procfs and sysfs are mounted, and where an open file lies: checks, not inputs
        if self._kernel_path(path):
            raise NotIndexable(f"read {path}, a file of the running kernel")
        known = self.entries.get(path)
        lst = known if known is not None else (path_sig(s) if (s := _lstat_or_none(path)) is not None else None)
        if lst is not None and known is None:
            self._check(path, lst)
        linked = follow and lst is not None and stat.S_ISLNK(lst[5])
        if known is not None and not linked:
            return  # its directory's digest holds its lstat
        target: list[Any] | None = None
        if linked:
            try:
                real = os.path.realpath(path)
            except OSError:
                real = path
            if self._in_store(real):
                target = [real]
            else:
                try:
                    followed = path_sig(_os_stat(path))
                except OSError:
                    followed = None
                if followed is not None:
                    self._check(path, followed)
                    target = list(followed)
        previous = self.files.get(path)
        if previous is None or (linked and previous[1] is None):
            self.files[path] = [list(lst) if lst is not None else None, target if linked else None, linked]

    def _store_dirs(self) -> list[list[Any]]:
        """The stat of each store directory the store paths are in: while it is unchanged no entry
        was added to it or removed (a directory's mtime moves with its entries), and `still_valid`
        need not look up each store path. False where it changed within the racy window."""
        out = []
        for directory in sorted({top if top.endswith(STORE[:-1]) else top.rpartition("/")[0] for top in self.store}):
            st = _lstat_or_none(directory)
            sig = list(stat_sig(st)) if st is not None else None  # None: absent, and so is every path in it
            out.append([directory, False if sig is not None and max(sig[3], sig[4]) > self.racy_after else sig])
        return out

    def build(self) -> dict[str, Any]:
        t = self.trace
        for path in sorted(self._outside_store(t.listed)):
            self.add_dir(path)
        for top in sorted(t.trees):
            self.add_tree(_norm(top))
        for path in self._outside_store(t.followed):
            self.add_file(path, True)
        for path in self._outside_store(t.lstated - t.followed):
            self.add_file(path, False)
        env = {k: v for k, v in os.environ.items() if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}
        return {
            "format": FORMAT,
            "scanned_ns": t.started_ns,
            "env": env,
            "cwd": t.cwd if t.cwd_matters else None,
            "store": sorted(self.store.items()),
            "store_dirs": self._store_dirs(),
            "dirs": sorted([p, *v] for p, v in self.dirs.items()),
            "files": sorted([p, *v] for p, v in self.files.items()),
        }


def _norm(path: str) -> str:
    if path != "/" and ("/." in path or "//" in path or path.endswith("/")):
        return os.path.normpath(path)
    return path


def _kernel_devices() -> frozenset[int]:
    from nixdrift.rootfs import _kernel_devices as devices  # the scan has loaded it: not imported by still_valid

    return devices()
