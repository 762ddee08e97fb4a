"""The service: one worker thread does every capture and compare; the main thread keeps time.

The main thread handles signals, the schedule, sd_notify and the watch's health. Realtime events
and scheduled scans only add to one pending job (categories + reasons), so runs never overlap and
a storm of events becomes one capture.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from nixdrift.categories import TABLE
from nixdrift.config import Config
from nixdrift.errors import NixdriftError
from nixdrift.flakeref import FlakeRef
from nixdrift.models import Category, Severity
from nixdrift.pipeline import ScanOptions
from nixdrift.service import routes
from nixdrift.service.health import Degradations
from nixdrift.service.history import Store
from nixdrift.service.notify import Notifier
from nixdrift.service.routes import Tree
from nixdrift.service.schedule import Schedule
from nixdrift.service.statelock import StateLock
from nixdrift.service.watch import Batch, Debouncer, Watcher
from nixdrift.service.worker import Job, Worker
from nixdrift.sinks.journald import Alert, Event, JournalSink

log = logging.getLogger(__name__)

ADOPT_EVERY = 2.0  # seconds between looks for watched trees that have appeared

LOST_QUIET = 5.0  # seconds: an overflow storm is said once per this, the rescan is never skipped

STOP_GRACE = 1.2  # seconds the worker gets to finish on SIGTERM (systemd expects us gone in 2 s)

Reload = Callable[[], tuple[Config, ScanOptions]]


@dataclass(slots=True)
class Pending:
    """The one job waiting for the worker; everything requested meanwhile merges into it."""

    job: Job | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, job: Job) -> None:
        with self.cond:
            self.job = job if self.job is None else self.job.merge(job)
            self.cond.notify()

    def take(self, timeout: float) -> Job | None:
        with self.cond:
            if self.job is None:
                self.cond.wait(timeout=timeout)
            job, self.job = self.job, None
            return job

    def categories(self) -> frozenset[Category]:
        with self.cond:
            return self.job.categories if self.job is not None else frozenset()


class Service:
    def __init__(self, cfg: Config, opts: ScanOptions, state_dir: Path, reload: Reload) -> None:
        self.reload_options = reload
        self.lock = StateLock.acquire(state_dir)  # before anything touches the history
        self.notifier = Notifier()
        self.store = Store.open(state_dir)
        self.journal = JournalSink()
        self.pending = Pending()
        self.stop = threading.Event()
        self._hup = threading.Event()
        self.degraded = Degradations()
        self.worker = Worker(cfg, opts, state_dir, self.store, self.journal, self.pending_add, self.degraded)
        self.schedule = Schedule(cfg.intervals)
        self.flake_dir = _local_flake(opts.flake)
        self.debouncer = Debouncer(self._on_batch)
        trees = routes.trees(opts.root, self.flake_dir) if cfg.realtime else []
        # trees that do not exist yet are adopted when they appear (checked every ADOPT_EVERY s)
        self.candidates = routes.candidate_trees(opts.root, self.flake_dir) if cfg.realtime else []
        self._adopted_at = 0.0
        self._lost_lock = threading.Lock()
        self._lost_said = -LOST_QUIET  # monotonic time events lost were last said
        self._lost_unsaid = 0
        self.watcher = Watcher(opts.root, trees, self.debouncer, self._on_lost, on_tree=self._on_tree)
        self.worker.health = self.watcher.health
        self.worker.on_scanned = self.schedule.mark

    def pending_add(self, job: Job) -> None:
        self.pending.add(job)

    # --- called from other threads: enqueue only -----------------------------------------------
    def _on_batch(self, batch: Batch) -> None:
        job = Job(reasons=frozenset({"event"}), realtime=True, events=batch.events)
        rows: list[tuple[str, None, str, str]] = []
        for real in sorted(batch.paths):
            host = (
                real
                if self.flake_dir and real.startswith(str(self.flake_dir))
                else routes.host_path(self.worker.root, real)
            )
            if host is None:
                continue
            action, cats = routes.route(host, self.flake_dir)
            if action is routes.Action.IGNORE:
                continue
            rows.append(("event", None, host, f"{action.value}: {','.join(sorted(c.value for c in cats)) or '-'}"))
            job = job.merge(Job.of(action, cats, host))
        for tree in sorted(batch.saturated):
            log.warning(
                "more than %d paths changed at once below %s: rescanning it whole", self.debouncer.max_paths, tree
            )
            trees = self.watcher.snapshot()[0]
            cats = routes.categories_of([t for t in trees if t.host_path == tree], self.flake_dir)
            job = job.merge(Job(categories=cats, reasons=frozenset({"event storm"}), realtime=True))
        if job.categories or job.reevaluate or job.full:
            self.pending.add(job)  # first: a history write that fails must not lose the capture
        try:
            self.store.events(rows)
        except sqlite3.Error as exc:
            self.worker.degrade("database", f"history database write failed: {exc}")

    def _adopt(self) -> None:
        """A watched tree that appeared (systemd's transient unit directory, a user's profiles):
        watch it, and capture what it already holds, which no event will announce."""
        for tree in self.watcher.adopt(self.candidates):
            cats = routes.categories_of([tree], self.flake_dir)
            self.pending.add(Job(categories=cats, reasons=frozenset({f"{tree.host_path} appeared"}), realtime=True))

    def _on_tree(self, tree: Tree, problem: str | None) -> None:
        """A watched tree vanished, was replaced or lost its observer (`problem`), or is watched
        again (None). Either way what it holds is captured now: no event will tell."""
        key = f"watch {tree.host_path}"
        if problem is None:
            self.worker.recover(key)
        else:
            self.worker.degrade(key, problem)
        cats = routes.categories_of([tree], self.flake_dir)
        why = f"{tree.host_path} {'watched again' if problem is None else problem}"
        self.pending.add(Job(categories=cats, reasons=frozenset({why}), realtime=True))

    def _on_lost(self, why: str) -> None:
        """Called on the inotify reader thread, once per overflow: a burst overflows hundreds of
        times, so the rescan is merged into the pending job every time but said (log, history,
        journal) at most once per LOST_QUIET seconds, with the count since."""
        cats = routes.categories_of([t for t in self.watcher.snapshot()[0] if not t.local], self.flake_dir)
        self.worker.events_lost += 1
        self.pending.add(Job(categories=cats, reasons=frozenset({"events lost"}), lost=True))
        now = time.monotonic()
        with self._lost_lock:
            self._lost_unsaid += 1
            if now - self._lost_said < LOST_QUIET:
                return
            count, self._lost_unsaid, self._lost_said = self._lost_unsaid, 0, now
        times = f" ({count} times)" if count > 1 else ""
        log.warning(
            "filesystem events lost (%s)%s: rescanning %s", why, times, ", ".join(sorted(c.value for c in cats))
        )
        self.journal.send(
            Alert(Event.EVENTS_LOST, f"filesystem events lost ({why}){times}; rescanning", Severity.MEDIUM)
        )
        try:
            self.store.events([("events-lost", None, "", why + times)])
        except sqlite3.Error as exc:
            self.worker.degrade("database", f"history database write failed: {exc}")

    # --- signals -------------------------------------------------------------------------------
    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._hup.set()
        else:
            self.stop.set()

    def _reload(self) -> None:
        self._hup.clear()
        self.notifier.reloading()
        try:
            cfg, opts = self.reload_options()
        except NixdriftError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
        else:
            log.warning("reloading: configuration %s, re-evaluating %s", cfg.path or "(defaults)", opts.flake)
            self.worker.configure(cfg, opts)
            self.schedule.intervals = dict(cfg.intervals)
            self.pending.add(Job(full=True, reevaluate=True, reasons=frozenset({"reload"})))
        self.notifier.ready(self.status_line())

    # --- the main thread -----------------------------------------------------------------------
    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._signal)
        for seq, started, cats in self.store.interrupted_scans():
            log.warning("scan %d (%s, started %s) was interrupted; the start scan covers it", seq, cats, started)
        self.store.close_interrupted()
        try:
            if delivered := self.worker.deliver():  # recorded by a previous life, never delivered
                log.warning("delivered %d alert(s) recorded before the last stop", delivered)
        except sqlite3.Error as exc:  # the first scan's delivery tries again
            self.worker.degrade("database", f"history database unreadable: {exc}")
        self.debouncer.start()
        self.watcher.start()
        self.pending.add(Job(full=True, reevaluate=True, reasons=frozenset({"start"})))
        self.worker.start(self.pending, self.stop)
        interval = self.notifier.watchdog_interval
        last_ping = 0.0
        ready = False
        while not self.stop.is_set():
            now = time.monotonic()
            if not ready and self.worker.scans_done > 0:
                ready = True
                self.notifier.ready(self.status_line())
                log.warning("ready: %s", self.status_line())
            if self._hup.is_set() and ready:
                self._reload()
            self.watcher.maintain()
            if now - self._adopted_at >= ADOPT_EVERY:
                self._adopted_at = now
                self._adopt()
            if ready:
                self._schedule_due(now)
            if again := self.worker.take_retry(now):
                self.pending.add(Job(categories=again, reasons=frozenset({"retry after a failure"})))
            if interval is not None and now - last_ping >= interval and self.healthy():
                self.notifier.watchdog()
                last_ping = now
            self.notifier.status(self.status_line())
            self.stop.wait(timeout=min(0.25, interval or 0.25))
        return self.shutdown()

    def _schedule_due(self, now: float) -> None:
        busy = self.pending.categories() | self.worker.running
        due = self.schedule.due(now) - busy
        if due:
            self.schedule.mark(due, now)  # the worker marks again when done; this stops re-requests
            self.pending.add(Job(categories=frozenset(due), reasons=frozenset({"interval"})))

    def healthy(self) -> bool:
        """What WATCHDOG vouches for: the worker is alive and not stuck in one job. Everything a
        restart cannot fix (a full disk, a vanished tree) is said in STATUS instead."""
        return self.worker.alive() and self.worker.stuck() is None

    def status_line(self) -> str:
        counts = self.worker.tracker.summary()
        drift = ", ".join(f"{n} {label}" for label, n in counts.items())
        last = self.worker.last_scan
        when = datetime.fromtimestamp(last[0], UTC).strftime("%H:%M:%SZ") if last else "never"
        reason = f" ({last[1]})" if last else ""
        err = f"; {self.worker.error}" if self.worker.error else ""
        stuck = self.worker.stuck()
        if stuck is not None:
            err += f"; worker stuck for {stuck:.0f} s"
        elif not self.worker.alive() and self.worker.scans_done:
            err += "; worker thread died"
        degraded = self.degraded.line()
        err += f"; degraded: {degraded}" if degraded else ""
        return f"drift: {drift}; last scan {when}{reason}; watch: {self.watcher.health().line()}{err}"

    def shutdown(self) -> int:
        log.warning("stopping")
        self.notifier.stopping()
        self.watcher.stop()
        self.debouncer.stop()
        self.pending.add(Job())  # wake the worker so it sees the stop flag
        finished = self.worker.join(STOP_GRACE)
        self.worker.close()
        if finished:
            self.store.close()
            self.lock.release()
        else:  # a capture is still running: every write so far is committed, so just go
            log.warning("a scan was still running; exiting without waiting for it")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        return 0


def _local_flake(ref: str) -> Path | None:
    path = FlakeRef.parse(ref).local_source()
    return path.resolve() if path is not None and path.is_dir() else None


def all_categories() -> frozenset[Category]:
    return frozenset(TABLE)
