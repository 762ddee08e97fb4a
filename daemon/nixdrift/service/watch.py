"""Realtime hints: watchdog observers, a per-path debouncer, and detection of lost events.

Handlers run on watchdog's observer thread, so they only hand the path to the debouncer (a dict
update under a lock). The debouncer's own thread flushes a path once it has been quiet for
`delay` (an editor's write-to-temp-then-rename is one change), or after `max_wait` during a storm.

watchdog's inotify backend does not tell a handler when the kernel queue overflows (IN_Q_OVERFLOW,
wd -1; before 7.x it dropped the event outright) nor when a descendant watch fails for lack of
watches (ENOSPC, swallowed while adding a recursive tree). Both pass through two module-level
seams of `watchdog.observers.inotify_c` in every version: the static `_parse_event_buffer` of the
inotify class and the ctypes `inotify_add_watch`. We wrap both once per process.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from watchdog import events as wd_events
from watchdog.observers.polling import PollingObserver

from nixdrift.rootfs import Root
from nixdrift.service.routes import Tree

log = logging.getLogger(__name__)

IN_Q_OVERFLOW = 0x4000

_FILTER: list[Any] = [
    getattr(wd_events, name)
    for name in (
        "FileCreatedEvent",
        "FileDeletedEvent",
        "FileModifiedEvent",
        "FileMovedEvent",
        "FileClosedEvent",
        "FileAttribEvent",
        "DirCreatedEvent",
        "DirDeletedEvent",
        "DirModifiedEvent",
        "DirMovedEvent",
        "DirAttribEvent",
    )
    if hasattr(wd_events, name)
]


# --- the seams ------------------------------------------------------------------------------------
@dataclass
class _Hooks:
    installed: bool = False
    overflow: list[Callable[[], None]] = field(default_factory=list)
    enospc: list[Callable[[str], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_HOOKS = _Hooks()


def install_hooks() -> bool:
    """Wrap watchdog's inotify parser and add_watch once; False when the backend is not there."""
    with _HOOKS.lock:
        if _HOOKS.installed:
            return True
        try:
            from watchdog.observers import inotify_c
        except (ImportError, OSError):
            return False
        holder = getattr(inotify_c, "InotifyFD", None) or getattr(inotify_c, "Inotify", None)
        if holder is None or not hasattr(holder, "_parse_event_buffer"):
            return False
        parse = holder._parse_event_buffer
        add_watch = inotify_c.inotify_add_watch

        def parse_and_spot_overflow(buffer: bytes) -> Iterator[Any]:
            for item in parse(buffer):
                if item[0] == -1 and item[1] & IN_Q_OVERFLOW:
                    for callback in list(_HOOKS.overflow):
                        callback()
                yield item

        def add_and_spot_enospc(fd: int, path: bytes, mask: int) -> Any:
            wd = add_watch(fd, path, mask)
            if wd < 0 and ctypes.get_errno() == errno.ENOSPC:
                for callback in list(_HOOKS.enospc):
                    callback(os.fsdecode(path))
            return wd

        holder._parse_event_buffer = staticmethod(parse_and_spot_overflow)
        inotify_c.inotify_add_watch = add_and_spot_enospc
        _HOOKS.installed = True
        return True


# --- debouncer ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Batch:
    paths: frozenset[str]  # real paths on this machine
    saturated: frozenset[str]  # trees whose paths overflowed the pending table: rescan them whole
    events: int  # raw events coalesced into this batch


class Debouncer:
    """Coalesce events per path; memory is bounded by `max_paths` pending entries."""

    def __init__(
        self,
        sink: Callable[[Batch], None],
        *,
        delay: float = 0.12,
        max_wait: float = 1.0,
        max_paths: int = 20000,
    ) -> None:
        self.sink = sink
        self.delay = delay
        self.max_wait = max_wait
        self.max_paths = max_paths
        self._pending: dict[str, tuple[float, float]] = {}  # path -> (first, last) monotonic
        self._saturated: dict[str, float] = {}
        self._events = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="nixdrift-debounce", daemon=True)
        self.events_total = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=1)

    def add(self, path: str, tree: str) -> None:
        """Called on the observer thread: O(1), never blocks on I/O."""
        now = time.monotonic()
        with self._cond:
            self._events += 1
            self.events_total += 1
            was_idle = not self._pending and not self._saturated
            if path in self._pending:
                self._pending[path] = (self._pending[path][0], now)
            elif len(self._pending) < self.max_paths:
                self._pending[path] = (now, now)
            else:
                self._saturated.setdefault(tree, now)
            if was_idle:
                self._cond.notify()

    def _due(self, now: float) -> tuple[Batch | None, float]:
        due = [
            p for p, (first, last) in self._pending.items() if now - last >= self.delay or now - first >= self.max_wait
        ]
        trees = [t for t, first in self._saturated.items() if now - first >= self.max_wait]
        for p in due:
            del self._pending[p]
        for t in trees:
            del self._saturated[t]
        waits = [min(last + self.delay, first + self.max_wait) - now for first, last in self._pending.values()]
        waits += [first + self.max_wait - now for first in self._saturated.values()]
        wait = max(0.005, min(waits)) if waits else 3600.0
        if not due and not trees:
            return None, wait
        batch = Batch(frozenset(due), frozenset(trees), self._events)
        self._events = 0
        return batch, wait

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                batch, wait = self._due(time.monotonic())
                if batch is None:
                    self._cond.wait(timeout=wait)
                    continue
            try:
                self.sink(batch)
            except Exception:
                log.exception("event sink failed")


class _Handler(wd_events.FileSystemEventHandler):
    def __init__(self, debouncer: Debouncer, tree: Tree, real: str) -> None:
        self.debouncer = debouncer
        self.tree = tree
        self.real = real

    def on_any_event(self, event: wd_events.FileSystemEvent) -> None:
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = os.fsdecode(raw)
            if self.tree.names and os.path.basename(path) not in self.tree.names:
                continue
            self.debouncer.add(path, self.tree.host_path)


# --- watcher --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    polling: tuple[str, ...]  # trees watched by polling (watch limit exhausted)
    dead: tuple[str, ...]  # trees whose observer died
    events_lost: int
    events_total: int
    trees: Mapping[str, bool]  # tree -> True when watched by a live inotify observer

    def line(self) -> str:
        parts = ["inotify ok" if not self.polling and not self.dead else "degraded"]
        if self.polling:
            parts.append("polling " + ",".join(self.polling) + " (inotify watch limit reached)")
        if self.dead:
            parts.append("not watching " + ",".join(self.dead))
        if self.events_lost:
            parts.append(f"{self.events_lost} overflow(s)")
        return "; ".join(parts)


class Watcher:
    """One observer per tree; inotify first, polling when the watch limit runs out."""

    def __init__(
        self,
        root: Root,
        trees: list[Tree],
        debouncer: Debouncer,
        on_lost: Callable[[str], None],
        *,
        poll_interval: float = 2.0,
        on_tree: Callable[[Tree, str | None], None] | None = None,
    ) -> None:
        self.root = root
        self.trees = trees
        self.debouncer = debouncer
        self.on_lost = on_lost
        self.poll_interval = poll_interval
        self._observers: dict[str, Any] = {}
        self._polling: set[str] = set()
        self._to_degrade: set[str] = set()
        self.on_tree = on_tree
        self._ident: dict[str, tuple[int, int]] = {}  # tree -> (st_dev, st_ino) of the directory watched
        self._gone: dict[str, str] = {}  # tree -> why it is not watched now (vanished, replaced, died)
        self._lock = threading.Lock()
        # trees and observers change on the main thread and are read by the worker and the
        # debouncer: every read takes a copy under this lock
        self._state = threading.RLock()
        self.events_lost = 0

    # called from watchdog's reader thread: count and hand off
    def _overflow(self) -> None:
        with self._lock:
            self.events_lost += 1
        self.on_lost("inotify queue overflowed")

    def _enospc(self, path: str) -> None:
        for tree in self.trees:
            real = str(tree.real(self.root))
            if path == real or path.startswith(real.rstrip("/") + "/"):
                with self._lock:
                    self._to_degrade.add(tree.host_path)

    def start(self) -> None:
        if install_hooks():
            _HOOKS.overflow.append(self._overflow)
            _HOOKS.enospc.append(self._enospc)
        for tree in self.trees:
            self._start_tree(tree)
        self.maintain()

    def _start_tree(self, tree: Tree, polling: bool = False) -> None:
        real = str(tree.real(self.root))
        ident = _ident(real)
        if ident is not None:
            self._ident[tree.host_path] = ident
        handler = _Handler(self.debouncer, tree, real)
        if not polling:
            try:
                from watchdog.observers.inotify import InotifyObserver

                observer: Any = InotifyObserver()
                observer.schedule(handler, real, recursive=tree.recursive, event_filter=_FILTER)
                observer.start()
                with self._state:
                    self._observers[tree.host_path] = observer
                log.info("watching %s with inotify", real)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EMFILE):
                    log.error("cannot watch %s: %s", real, exc)
                    return
                log.warning("inotify limit reached watching %s (%s); polling it instead", real, exc)
            except ImportError:
                log.warning("inotify is not available; polling %s", real)
        observer = PollingObserver(timeout=self.poll_interval)
        observer.schedule(handler, real, recursive=tree.recursive, event_filter=_FILTER)
        observer.start()
        with self._state:
            self._observers[tree.host_path] = observer
            self._polling.add(tree.host_path)
        log.warning("watching %s by polling every %.0f s", real, self.poll_interval)

    def adopt(self, candidates: list[Tree]) -> list[Tree]:
        """Start watching candidate trees that have appeared since the start; returns them."""
        known = {t.host_path for t in self.trees}
        new = [t for t in candidates if t.host_path not in known and t.real(self.root).is_dir()]
        for tree in new:
            if tree.real(self.root).is_symlink():
                continue
            log.info("%s appeared: watching it", tree.host_path)
            with self._state:
                self.trees = [*self.trees, tree]
            self._start_tree(tree)
        return new

    def maintain(self) -> None:
        """Move trees whose inotify watches ran out onto polling, and re-watch trees that vanished,
        were replaced or lost their observer (the main thread calls it every quarter second)."""
        self._check_trees()
        with self._lock:
            degrade, self._to_degrade = self._to_degrade - self._polling, set()
        for host_path in sorted(degrade):
            tree = next(t for t in self.trees if t.host_path == host_path)
            log.warning("inotify watch limit reached below %s: falling back to polling that tree", host_path)
            with self._state:
                old = self._observers.pop(host_path, None)
            if old is not None:
                old.stop()
            self._start_tree(tree, polling=True)
            self.on_lost(f"inotify watch limit reached below {host_path}")

    def snapshot(self) -> tuple[list[Tree], dict[str, Any], frozenset[str]]:
        """Copies of the trees, their observers and the polled trees: safe to read from any thread."""
        with self._state:
            return list(self.trees), dict(self._observers), frozenset(self._polling)

    def _check_trees(self) -> None:
        """A watched directory deleted (and maybe recreated) or replaced keeps no inotify watch, and an
        observer thread can die: stop watching what is gone, watch again what is back."""
        trees, observers, _polling = self.snapshot()
        for tree in trees:
            key = tree.host_path
            now = _ident(str(tree.real(self.root)))
            observer = observers.get(key)
            problem: str | None = None
            if key in self._gone:
                if now is None:
                    continue
                problem = None  # back: watch it again below
            elif observer is None:
                continue  # never watched (an error at start, already logged)
            elif now is None:
                problem = "vanished: not watched until it is back"
            elif now != self._ident.get(key):
                problem = "replaced by another directory"
            elif not observer.is_alive() or not all(e.is_alive() for e in list(getattr(observer, "emitters", ()))):
                problem = "its observer thread died"
            else:
                continue
            if observer is not None:
                with self._state:
                    self._observers.pop(key, None)
                    self._polling.discard(key)
                observer.stop()
            if problem is not None and now is None:
                log.warning("%s %s", key, problem)
                self._gone[key] = problem
            else:
                if problem is not None:
                    log.warning("%s %s: watching it again", key, problem)
                self._gone.pop(key, None)
                self._start_tree(tree)
            if self.on_tree is not None:
                self.on_tree(tree, problem)
                if problem is not None and now is not None:
                    self.on_tree(tree, None)  # replaced or restarted: degraded a moment, watched again

    def health(self) -> Health:
        trees, observers, polling = self.snapshot()
        gone = dict(self._gone)
        dead = tuple(sorted(p for p, o in observers.items() if not o.is_alive()))
        missing = tuple(sorted(t.host_path for t in trees if t.host_path not in observers))
        dead = tuple(sorted(set(dead) - set(gone)))
        missing = tuple(f"{p} ({gone[p]})" if p in gone else p for p in missing)
        return Health(
            healthy=not dead and not missing,
            polling=tuple(sorted(polling)),
            dead=dead + missing,
            events_lost=self.events_lost,
            events_total=self.debouncer.events_total,
            trees={
                t.host_path: t.host_path in observers and t.host_path not in polling and t.host_path not in dead
                for t in trees
            },
        )

    def stop(self) -> None:
        if self._overflow in _HOOKS.overflow:
            _HOOKS.overflow.remove(self._overflow)
        if self._enospc in _HOOKS.enospc:
            _HOOKS.enospc.remove(self._enospc)
        _trees, observers, _polling = self.snapshot()
        for observer in observers.values():
            observer.stop()
        for observer in observers.values():
            observer.join(timeout=1)


def _ident(path: str) -> tuple[int, int] | None:
    """(device, inode) of a directory (not followed when a symlink), None when there is none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None
