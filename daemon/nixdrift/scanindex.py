"""The scan index: what git's index does for `git status`, for a whole check.

A check records every input its scan read (`tracing()`), and the next check with the same question
prints the previous answer when every one of those inputs is exactly as it was (`still_valid()`),
without loading the pipeline at all (`nixdrift.quick`).

What is recorded, while the scan runs (the paths only; their stats are taken once it is done):
- every path opened, listed (`os.scandir`, `os.listdir`) or stat'ed (`os.stat`, `os.lstat`,
  `os.readlink`, and so everything in `os.path` and `pathlib` that asks them): a Python audit hook
  sees the opens and listings, and `os.stat`/`os.lstat`/`os.readlink` are wrapped for the scan's
  duration; `rootfs` tells which store links it knew from an earlier scan without looking;
- for every listed directory its own stat and the lstat of each entry (name, inode, size, mtime,
  ctime, mode, owner), as one digest per directory;
- for every other path its lstat, and when it is a symlink that was followed, its stat (the file it
  leads to); an absent path is recorded absent (its creation is a change);
- for store paths (below /nix/store, in the root or on this machine) only whether the top store
  path exists: a store path never changes once it is there;
- the environment that steers git and nix (PATH, HOME, XDG_CONFIG_HOME, GIT_*, NIX_*).

The stats are taken after the scan. That is sound for the same reason git's racy-clean rule is:
every write moves a file's ctime, which nobody can set back, so a file changed during the scan, or
after it and before its stat was taken, has a ctime after the scan started; the trace is then not
indexable (a check that raced with a change looks again next time).

`manifest()` is None, not indexable, when the scan used anything a stat cannot vouch for:
- a process (nix on an evaluation cache miss, nft, systemctl …) or a socket (D-Bus on the live
  host, listening sockets), except a process run inside `vouch_processes()`, whose caller records
  explicitly what the process reads (the repo collector's git: the whole work tree and `.git`);
- a file of the running kernel (procfs, sysfs: mounts, sockets of the live host);
- a file changed within RACY_NS of the scan's start (or during the scan);
- a category `unavailable` (a check that could not look must look again: the caller says so);
- more than MAX_INPUTS inputs, or a listing or stat relative to a directory descriptor.
So on the live host (D-Bus, /proc, nft) a check is never indexable: the daemon's answer is the live
host's fast path. Under `--root` (a mounted disk, a snapshot, a fixture) it is.

Time: the collectors and comparators read no clock (the D-Bus collector's boot-relative times are
live-host only, where sockets already make the trace unindexable); the report's `generated_at` and
the findings' first/last seen are the scan's time, which the answer keeps and its header states.
What would age is covered by the age bound: an answer older than MAX_AGE_NS, or one "from the
future" (the clock went back), is never used.

This module imports only the standard library: `still_valid` runs in `nixdrift.quick`, before the
pipeline is loaded. Building the manifest is `nixdrift.scanmanifest`'s, loaded by a check that scanned.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time

TYPE_CHECKING = False  # not typing's: still_valid runs in nixdrift.quick, where its import is a tenth of the cost
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from types import TracebackType
    from typing import Any

FORMAT = "nixdrift-scanindex 2"
RACY_NS = 2_000_000_000  # statcache.RACY_NS (not imported: this module is stdlib-only); a test keeps them equal
MAX_AGE_NS = 24 * 3600 * 1_000_000_000  # an answer older than a day is never used: what ages, ages
MAX_INPUTS = 500_000
STORE = "/nix/store/"
ENV_NAMES = ("PATH", "HOME", "XDG_CONFIG_HOME")
ENV_PREFIXES = ("GIT_", "NIX_")
_PROCESS_EVENTS = frozenset(
    ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system", "os.fork", "os.forkpty", "os.spawn", "pty.spawn")
)
_SOCKET_EVENTS = frozenset(("socket.connect", "socket.bind", "socket.sendto", "sqlite3.connect", "ctypes.dlopen"))
_IMPORTS = "<frozen importlib"

Sig = tuple[int, int, int, int, int, int, int, int]  # dev, ino, size, mtime_ns, ctime_ns, mode, uid, gid


def stat_sig(st: os.stat_result) -> Sig:
    """What must be unchanged for a path to read the same: its (device, inode, size, mtime, ctime,
    mode, owner)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid, st.st_gid)


def path_sig(st: os.stat_result) -> Sig:
    """A path's sig; for a directory that was not listed, what it is and not its times or size (they
    move whenever an entry is added, and a stat of a directory tells a scan only that it is one)."""
    if stat.S_ISDIR(st.st_mode):
        return (st.st_dev, st.st_ino, 0, 0, 0, st.st_mode, st.st_uid, st.st_gid)
    return stat_sig(st)


class Trace:
    """The paths one scan used, and why it may not be indexable (see the module's docstring)."""

    __slots__ = (
        "cwd",
        "cwd_matters",
        "followed",
        "ignored",
        "listed",
        "lstated",
        "started_ns",
        "taints",
        "trees",
        "vouching",
    )

    def __init__(self, ignored: Iterable[str] = ()) -> None:
        self.started_ns = time.time_ns()
        self.cwd = os.getcwd()
        self.cwd_matters = False  # a relative path was used: the answer holds in this directory only
        self.followed: set[str] = set()  # opened or stat'ed with links followed
        self.lstated: set[str] = set()  # lstat'ed or readlink'ed
        self.listed: set[str] = set()  # directories listed
        self.trees: set[str] = set()  # directories recorded whole (vouch_processes)
        self.taints: list[str] = []
        self.vouching = 0
        self.ignored = tuple(sorted({os.path.normpath(p) for p in ignored if p and p != "/"}))

    def taint(self, reason: str) -> None:
        """This scan's answer may not be reused: `reason` says why (the first few are kept)."""
        if len(self.taints) < 8:
            self.taints.append(reason)

    def depends_on_cwd(self) -> None:
        """What the scan read depends on the working directory (e.g. `--flake .`)."""
        self.cwd_matters = True

    def manifest(self) -> bytes | None:
        """The recorded inputs with their stats now, or None when the scan is not indexable. Asked
        once the traced block is over."""
        if _ACTIVE is self:
            raise RuntimeError("the manifest of a trace still running")
        if self.taints:
            return None
        from nixdrift.scanmanifest import NotIndexable, build  # only a check that scanned needs it

        try:
            doc = build(self)
        except NotIndexable as exc:
            self.taint(str(exc))
            return None
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogateescape")
        return f"{FORMAT} {hashlib.sha256(body).hexdigest()}\n".encode("ascii") + body  # a damaged byte is no answer


# --- recording ----------------------------------------------------------------------------------
_ACTIVE: Trace | None = None
_HOOKED = False
REAL_STAT = os.stat
REAL_LSTAT = os.lstat
REAL_READLINK = os.readlink


def _path(trace: Trace, path: Any) -> str | None:
    """An absolute path string, or None for a descriptor (which says nothing about a path)."""
    if type(path) is str:
        text = path
    elif isinstance(path, int):
        return None
    else:
        try:
            text = os.fsdecode(os.fspath(path))
        except TypeError:
            return None
    if text.startswith("/"):
        return text
    trace.cwd_matters = True
    return os.path.join(trace.cwd, text)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    trace = _ACTIVE
    if trace is None:
        return
    if event in ("open", "os.scandir", "os.listdir") and _caller().startswith(_IMPORTS):
        return  # the import system reading code (a module loaded lazily during the scan)
    if event == "open":
        if (path := _path(trace, args[0])) is not None:
            trace.followed.add(path)
    elif event in ("os.scandir", "os.listdir"):
        path = _path(trace, args[0] if args and args[0] is not None else ".")
        if path is None:
            trace.taint("a directory listed through a descriptor")
        else:
            trace.listed.add(path)
    elif event in _PROCESS_EVENTS:
        if not trace.vouching:
            trace.taint(f"ran a process ({event})")
    elif event in _SOCKET_EVENTS:
        trace.taint(f"used a socket or database ({event})")


def _caller() -> str:
    """The file of the Python code that caused the audited event ("" when none did): a hook that
    raised would make the operation it audits fail."""
    try:
        return sys._getframe(2).f_code.co_filename
    except ValueError:
        return ""


def _note(path: Any, dir_fd: Any, follow: bool) -> None:
    trace = _ACTIVE
    if trace is None:
        return
    if dir_fd is not None:
        trace.taint("a path looked up relative to a directory descriptor")
    elif (text := _path(trace, path)) is not None:
        (trace.followed if follow else trace.lstated).add(text)


def _stat(path: Any, *, dir_fd: Any = None, follow_symlinks: bool = True) -> os.stat_result:
    trace = _ACTIVE
    if trace is not None and dir_fd is None and type(path) is str and path[:1] == "/":
        (trace.followed if follow_symlinks else trace.lstated).add(path)
    else:
        _note(path, dir_fd, follow_symlinks)
    return REAL_STAT(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)


def _lstat(path: Any, *, dir_fd: Any = None) -> os.stat_result:
    trace = _ACTIVE
    if trace is not None and dir_fd is None and type(path) is str and path[:1] == "/":
        trace.lstated.add(path)  # the common case, kept short: rootfs looks up thousands of links
    else:
        _note(path, dir_fd, False)
    return REAL_LSTAT(path, dir_fd=dir_fd)


def _readlink(path: Any, *, dir_fd: Any = None) -> Any:
    trace = _ACTIVE
    if trace is not None and dir_fd is None and type(path) is str and path[:1] == "/":
        trace.lstated.add(path)
    else:
        _note(path, dir_fd, False)
    return REAL_READLINK(path, dir_fd=dir_fd)


def taint(reason: str) -> None:
    """The scan being traced (if any) used something its inputs cannot vouch for."""
    if _ACTIVE is not None:
        _ACTIVE.taint(reason)


def vouch_tree(path: str) -> None:
    """Record the whole directory tree at `path` as an input of the scan being traced (if any)."""
    if _ACTIVE is not None:
        _ACTIVE.trees.add(os.path.abspath(path))


def note_store(*paths: str) -> None:
    """A store path looked up without a stat (rootfs knew it from an earlier scan): below the root
    and on this machine."""
    trace = _ACTIVE
    if trace is not None:
        trace.lstated.update(paths)


def _python_paths() -> set[str]:
    """Where Python and nixdrift's own code live: their opens are imports, not the scan's inputs."""
    tops = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(__file__))}
    if sys.pycache_prefix:
        tops.add(sys.pycache_prefix)
    tops.update(p for p in sys.path if p.startswith("/") and ("site-packages" in p or "/lib/python" in p))
    return tops


def tracing(ignored: Iterable[str] = ()) -> _Tracing:
    """Record the inputs of the scan run inside the `with` block (one at a time per process). Paths
    below `ignored` (the cache directory: the stat cache, the evaluation cache and the answers, which
    a scan writes and which never change its result) are not inputs."""
    return _Tracing(ignored)


class _Tracing:
    """`tracing()` (a class, not contextlib's: this module stays light for the quick path)."""

    def __init__(self, ignored: Iterable[str]) -> None:
        self.ignored = list(ignored)
        self.saved = (os.stat, os.lstat, os.readlink)

    def __enter__(self) -> Trace:
        global _ACTIVE, _HOOKED
        if _ACTIVE is not None:
            raise RuntimeError("a scan is already traced")
        if not _HOOKED:
            sys.addaudithook(_audit)  # stays for the process's life: a no-op when nothing is traced
            _HOOKED = True
        trace = Trace([*self.ignored, *_python_paths()])
        # the wrappers are installed only while a scan is traced
        self.saved = (os.stat, os.lstat, os.readlink)
        os.stat, os.lstat, os.readlink = _stat, _lstat, _readlink
        _ACTIVE = trace
        return trace

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        global _ACTIVE
        _ACTIVE = None
        os.stat, os.lstat, os.readlink = self.saved


def vouch_processes(trees: Iterable[str] = (), files: Iterable[str] = ()) -> _Vouching:
    """Processes run inside the `with` block do not make the trace unindexable: the caller records
    what they read, `trees` (directories recorded whole, every entry of every directory below them)
    and `files` (present or absent). Outside a trace, nothing."""
    return _Vouching(trees, files)


class _Vouching:
    def __init__(self, trees: Iterable[str], files: Iterable[str]) -> None:
        self.trace = _ACTIVE
        if self.trace is not None:
            self.trace.trees.update(os.path.abspath(t) for t in trees)
            self.trace.followed.update(os.path.abspath(f) for f in files)

    def __enter__(self) -> None:
        if self.trace is not None:
            self.trace.vouching += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.trace is not None:
            self.trace.vouching -= 1


# --- digests: the manifest's and still_valid's ---------------------------------------------------
# A listing's digest: how many entries, and the sum of the hashes of their lstats. The names are not
# in it: the directory's own stat is recorded beside it, and adding, removing or renaming an entry
# moves the directory's mtime. Every change to an entry moves its ctime. A sum needs no sorting, and
# the hash of a tuple of ints is the same in every process (unlike a string's); at validation it is
# computed as the entries are listed (the quick path's hot loop), without building rows.
_MASK = (1 << 64) - 1


def rows_digest(rows: list[tuple[Any, ...]] | None) -> str:
    if rows is None:
        return "absent"
    return f"{len(rows)}:{sum(hash(row[1:]) for row in rows) & _MASK:x}"


def _listing_digest(path: str) -> str:
    count = total = 0
    try:
        with os.scandir(path) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                sig = (
                    st.st_dev,
                    st.st_ino,
                    st.st_size,
                    st.st_mtime_ns,
                    st.st_ctime_ns,
                    st.st_mode,
                    st.st_uid,
                    st.st_gid,
                )
                total += hash(sig)
                count += 1
    except (FileNotFoundError, NotADirectoryError):
        return "absent"
    return f"{count}:{total & _MASK:x}"


# --- validation ---------------------------------------------------------------------------------
def still_valid(directory: Any, meta: Mapping[str, Any], now_ns: Callable[[], int] = time.time_ns) -> bool:
    """Is the answer in `directory` (its meta as `answer.read` gave it) what a scan would say now?
    True only when every input it recorded is exactly as recorded, the clock has not gone back
    since, and the answer is younger than MAX_AGE_NS. Never raises: anything unexpected is False."""
    try:
        return _still_valid(directory, meta, now_ns())
    except Exception:  # noqa: BLE001 - a damaged manifest is no answer, never a traceback
        return False


def _stat_list(path: str) -> list[int] | bool | None:
    try:
        return list(stat_sig(os.lstat(path)))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return False


def _load(directory: Any, meta: Mapping[str, Any]) -> bytes | None:
    """The manifest file of the answer (as `answer.load`, which this stdlib-only module does not import)."""
    size = meta["sizes"]["inputs"]
    with open(os.path.join(directory, f"answer-{meta['token']}.inputs"), "rb") as handle:
        data = handle.read(size + 1)
    return data if len(data) == size else None


def _still_valid(directory: Any, meta: Mapping[str, Any], now: int) -> bool:
    validity = meta.get("validity")
    if not isinstance(validity, dict) or validity.get("kind") != "inputs" or validity.get("format") != FORMAT:
        return False
    raw = _load(directory, meta)
    if raw is None:
        return False
    head, _, body = raw.partition(b"\n")
    if head != f"{FORMAT} {hashlib.sha256(body).hexdigest()}".encode("ascii"):
        return False
    doc = json.loads(body.decode("utf-8", "surrogateescape"))
    scanned = doc["scanned_ns"]
    if doc["format"] != FORMAT or scanned != validity.get("scanned_ns") or not scanned <= now < scanned + MAX_AGE_NS:
        return False
    env = {k: v for k, v in os.environ.items() if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}
    if env != doc["env"] or doc["cwd"] not in (None, os.getcwd()):
        return False
    lexists = os.path.lexists
    unchanged = all(sig is not False and _stat_list(directory) == sig for directory, sig in doc["store_dirs"])
    if not unchanged and any(lexists(top) != bool(present) for top, present in doc["store"]):
        return False
    for path, lst, target, linked in doc["files"]:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            if lst is not None:
                return False
            continue
        if lst is None or list(path_sig(st)) != lst:
            return False
        if linked:
            if isinstance(target, list) and len(target) == 1:
                if os.path.realpath(path) != target[0] or not lexists(target[0]):
                    return False
            else:
                try:
                    followed: list[int] | None = list(path_sig(os.stat(path)))
                except OSError:
                    followed = None
                if followed != target:
                    return False
    for path, own, digest in doc["dirs"]:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            if own is not None:
                return False
            continue
        if own is None or list(stat_sig(st)) != own:
            return False
        if (_listing_digest(path) if stat.S_ISDIR(st.st_mode) else "absent") != digest:
            return False
    return True
