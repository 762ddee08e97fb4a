"""A stat cache for file digests, the way git's index avoids re-hashing unchanged files.

For every file it hashed, a scan remembers (dev, inode, size, mtime_ns, ctime_ns, mode) -> sha256,
by path, in `<cache dir>/digests-<root>.json` (the check's cache directory; the daemon's is in its
state directory). The next scan re-hashes only the files whose stat changed. Any write to a file
moves its ctime, which no user can set back; what the stat cannot show is a second write within
the same clock tick as the stat that was recorded, so, like git's racy-clean rule, an entry is only
kept when the file's mtime and ctime are older than RACY_NS at the moment it was hashed (a file
changed "just now" is hashed again at every scan until it settles). Store paths never change, so
each is hashed once.

The cache is an optimisation and nothing else: a missing, stale, damaged or unwritable cache gives
the same digests, only slower. The file carries the sha256 of its own body: a cut-short or altered
file is thrown away whole (never half trusted), and it is replaced atomically (a temporary file in
the same directory, renamed over it) with mode 0600.

Collectors ask `sha256(path, compute)`, where compute(path) reads the file; the pipeline opens a
`session()` around a capture, which makes a cache the active one for that thread and saves it
afterwards. Without a session, compute(path) is all there is.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = "nixdrift-stat-cache 1"
RACY_NS = 2_000_000_000  # a file changed within this of being hashed is not trusted next time
_HEX = frozenset("0123456789abcdef")

Hasher = Callable[[Path], "str | None"]  # reads a file: its sha256, or None when it is not hashed


@dataclass(frozen=True, slots=True)
class Stamp:
    """What must be unchanged for a recorded digest to hold."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    mode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)

    def racy(self, now_ns: int) -> bool:
        """Changed so recently that another write in the same tick would leave the stat as it is."""
        return max(self.mtime_ns, self.ctime_ns) > now_ns - RACY_NS


@dataclass(frozen=True, slots=True)
class Entry:
    stamp: Stamp
    sha256: str | None  # None: larger than the hash limit when it was read


class DigestCache:
    """Digests by path, valid while the file's stamp is unchanged. Not shared between threads."""

    def __init__(
        self,
        entries: dict[str, Entry] | None = None,
        file: Path | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.entries: dict[str, Entry] = entries or {}
        self.file = file
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self._used: set[str] = set()
        self._dirty = False
        self._written: tuple[int, int, int] | None = None  # the file as this object last wrote it

    # --- lookups --------------------------------------------------------------------------------
    def sha256(self, path: Path, compute: Hasher, st: os.stat_result | None = None) -> str | None:
        """compute(path), the digest of the regular file at `path`, unless the file's stat is the
        one recorded with a digest. `st` is the caller's lstat of it; without one, links are followed."""
        try:
            stamp = Stamp.of(st if st is not None else os.stat(path))
        except OSError:
            return compute(path)  # nothing to key it by: the caller's own reading says what is there
        if not stat.S_ISREG(stamp.mode):
            return compute(path)
        key = os.fspath(path)
        self._used.add(key)
        known = self.entries.get(key)
        if known is not None and known.stamp == stamp:
            self.hits += 1
            return known.sha256
        self.misses += 1
        self._dirty = True
        now = self.clock()
        digest = compute(path)
        try:
            after = Stamp.of(os.lstat(path) if st is not None else os.stat(path))
        except OSError:
            after = None
        if after == stamp and not stamp.racy(now):
            self.entries[key] = Entry(stamp, digest)
        else:  # changed while it was read, or too recently to trust its stat: read again next time
            self.entries.pop(key, None)
        return digest

    # --- the file -------------------------------------------------------------------------------
    @classmethod
    def load(cls, file: Path, clock: Callable[[], int] = time.time_ns) -> DigestCache:
        """The cache stored in `file`; an empty one when it is absent, unreadable or damaged."""
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            return cls(file=file, clock=clock)
        except OSError as exc:
            log.info("stat cache %s not read (hashing every file): %s", file, exc)
            return cls(file=file, clock=clock)
        try:
            entries = parse(raw)
        except ValueError as exc:
            log.warning("stat cache %s is damaged (%s): hashing every file and rewriting it", file, exc)
            return cls(file=file, clock=clock)
        return cls(entries, file, clock)

    def dump(self) -> bytes:
        body = json.dumps(
            {p: [*_fields(e.stamp), e.sha256] for p, e in sorted(self.entries.items())},
            separators=(",", ":"),
        ).encode("ascii")
        return f"{MAGIC} {hashlib.sha256(body).hexdigest()}\n".encode("ascii") + body

    def save(self) -> bool:
        """Write the entries used since the last save (those of files gone are dropped), atomically.
        Nothing is written when nothing changed. Never raises: a cache that cannot be written only
        costs the next scan its hashing. True when the file was written. A capture that looked
        nothing up (the daemon's firewall scan, say) leaves the cache as it is."""
        unused = self.entries.keys() - self._used if self._used else set()
        if self.file is None or not (self._dirty or unused):
            self._used.clear()
            return False
        for path in unused:
            del self.entries[path]
        self._used.clear()
        self._dirty = False
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.file.name}.", dir=self.file.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(self.dump())
                os.replace(tmp, self.file)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            st = self.file.stat()
        except OSError as exc:
            log.info("stat cache %s not written (the next scan hashes every file): %s", self.file, exc)
            return False
        self._written = (st.st_ino, st.st_size, st.st_mtime_ns)
        return True

    def current(self) -> bool:
        """The file is still the one this object last wrote (a daemon keeps using it without reading it)."""
        if self.file is None or self._written is None:
            return False
        try:
            st = self.file.stat()
        except OSError:
            return False
        return (st.st_ino, st.st_size, st.st_mtime_ns) == self._written


def _fields(s: Stamp) -> tuple[int, int, int, int, int, int]:
    return (s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns, s.mode)


def parse(raw: bytes) -> dict[str, Entry]:
    """The entries of a cache file; ValueError when any byte of it is not as written."""
    head, sep, body = raw.partition(b"\n")
    if not sep:
        raise ValueError("no header line")
    try:
        magic, checksum = head.decode("ascii").rsplit(" ", 1)
    except (UnicodeDecodeError, ValueError):
        raise ValueError("not a stat cache header") from None
    if magic != MAGIC:
        raise ValueError(f"not a {MAGIC!r} file")
    if hashlib.sha256(body).hexdigest() != checksum:
        raise ValueError("checksum mismatch (cut short or altered)")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError("body is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("body is not an object of paths")
    entries: dict[str, Entry] = {}
    for path, value in doc.items():
        if not (isinstance(value, list) and len(value) == 7):
            raise ValueError("an entry is not [dev, ino, size, mtime_ns, ctime_ns, mode, sha256]")
        *numbers, digest = value
        if not all(type(n) is int and n >= 0 for n in numbers):
            raise ValueError("an entry's stat is not whole numbers")
        if digest is not None and not (isinstance(digest, str) and len(digest) == 64 and _HEX.issuperset(digest)):
            raise ValueError("an entry's digest is not a sha256")
        entries[path] = Entry(Stamp(*numbers), digest)
    return entries


# --- the active cache ---------------------------------------------------------------------------
_ACTIVE: contextvars.ContextVar[DigestCache | None] = contextvars.ContextVar("nixdrift_stat_cache", default=None)
_KEPT: dict[Path, DigestCache] = {}  # the last cache of each file, reused while the file is unchanged


def file_for(directory: Path, prefix: Path) -> Path:
    """One cache file per root prefix: checking a snapshot does not evict the live host's entries."""
    tag = "live" if str(prefix) == "/" else hashlib.sha256(os.fsencode(prefix)).hexdigest()[:16]
    return directory / f"digests-{tag}.json"


def active() -> DigestCache | None:
    return _ACTIVE.get()


@contextlib.contextmanager
def session(directory: Path | None, prefix: Path) -> Iterator[DigestCache | None]:
    """Make the cache of `prefix` in `directory` the active one while the block runs, and save it
    after. No directory: no cache (every file is hashed)."""
    if directory is None:
        yield None
        return
    file = file_for(directory, prefix)
    kept = _KEPT.get(file)
    cache = kept if kept is not None and kept.current() else DigestCache.load(file)
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)
    cache.save()
    _KEPT[file] = cache


def sha256(path: Path, compute: Hasher, st: os.stat_result | None = None) -> str | None:
    """compute(path), the digest of the regular file at `path`, or the one the active cache recorded
    for the file's unchanged stat (`st`: the caller's lstat; without it links are followed)."""
    cache = _ACTIVE.get()
    if cache is None:
        return compute(path)
    return cache.sha256(path, compute, st)
