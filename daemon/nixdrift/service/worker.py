"""The worker thread: evaluate, capture, compare, reconcile, alert, publish. One job at a time."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import gc
import io
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, assert_never

from nixdrift import __version__, pipeline
from nixdrift import target as scan_target
from nixdrift.capture import etc_paths
from nixdrift.categories import TABLE
from nixdrift.compare import etc as c_etc
from nixdrift.config import Config
from nixdrift.declared.model import DeclaredState
from nixdrift.errors import NixdriftError
from nixdrift.models import Category, Finding, Fix, Kind, Report, Section, Severity, Source, sort_findings
from nixdrift.pipeline import ScanOptions
from nixdrift.service import answering, attribution, remediate
from nixdrift.service.health import Degradations
from nixdrift.service.history import PAGE, Store
from nixdrift.service.routes import Action
from nixdrift.service.tracker import Scoped, Tracker, scan_failed
from nixdrift.sinks.journald import Alert, Event, JournalSink

if TYPE_CHECKING:
    from nixdrift.service.loop import Pending
    from nixdrift.service.watch import Health

log = logging.getLogger(__name__)

MAX_ATTRIBUTIONS = 20  # per job: a storm is not worth a journal query per file
PUBLISH_EVERY = 1.0  # seconds: the report files and metrics at most this often
# ... and once the worker has had nothing to do for PUBLISH_QUIET (rewriting a report of 15,000
# findings takes longer than an edit's capture: it must not stand between two edits and their
# alerts), but never later than PUBLISH_LATEST after the change it shows
PUBLISH_QUIET = 0.4
STORM_GAP = 0.05  # seconds: a scoped job taken this soon after the last one ended is part of a storm
GATHER = 0.3  # seconds a storm's scoped job waits for more events to merge into it
PUBLISH_LATEST = 5.0
# ... and, after a publication that took T seconds, not before (1 + PUBLISH_SHARE) * T from its
# start: a report of 100,000 findings takes seconds to write, and a storm's captures come first
PUBLISH_SHARE = 3.0
SCOPED = frozenset({Category.ETC})  # categories an event re-captures at its paths only
# ... while its events named at most this many paths: more (a storm) is /etc captured whole, which
# is compared and recorded a page at a time, where a capture at paths is held whole
SCOPED_MAX = 5000
BIG = 2000  # findings changed in one job after which the worker hands freed memory back
DELIVER_BATCH = 100  # alerts sent between two marks of delivery (a crash repeats at most these)
RETRY_AFTER = 2.0  # seconds before a job that failed (database, exception) is tried again

# Test-only: `NIXDRIFT_TEST_PAUSE_AT=<step>[@<job number>]` makes the worker write
# `<state>/paused-at-<step>` and wait there until the file is removed, so a test can kill the
# daemon (or watch it be stuck) at a point it chose. Steps: capture, record.
PAUSE_ENV = "NIXDRIFT_TEST_PAUSE_AT"


def stuck_after() -> float:
    """Seconds one job may run before the worker counts as stuck (WATCHDOG stops; systemd restarts)."""
    try:
        return float(os.environ.get("NIXDRIFT_STUCK_AFTER", "300"))
    except ValueError:
        return 300.0


@dataclass(frozen=True, slots=True)
class Job:
    categories: frozenset[Category] = frozenset()
    reasons: frozenset[str] = frozenset()
    full: bool = False
    reevaluate: bool = False
    realtime: bool = False
    lost: bool = False
    events: int = 0
    at: float = 0.0  # wall time of the first change (attribution looks around it)
    # categories whose events named paths (relative to /etc): only those are re-captured, unless
    # something asked for the whole category too (an interval, a lost event, a storm)
    scoped: Mapping[Category, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, action: Action, categories: frozenset[Category], path: str) -> Job:
        now = time.time()
        match action:
            case Action.SWITCH:
                return cls(full=True, reasons=frozenset({f"system switch ({path})"}), realtime=True, at=now)
            case Action.REEVALUATE:
                return cls(categories, frozenset({f"flake changed ({path})"}), reevaluate=True, realtime=True, at=now)
            case Action.CAPTURE:
                under = path == "/etc" or path.startswith("/etc/")  # "/etc" itself: its children say what changed
                scoped = {c: frozenset({path[len("/etc/") :]}) for c in categories & SCOPED if under}
                return cls(categories, frozenset({"event"}), realtime=True, at=now, scoped=scoped)
            case Action.IGNORE:
                return cls()
            case _:
                assert_never(action)

    def merge(self, other: Job) -> Job:
        ats = [a for a in (self.at, other.at) if a]
        return Job(
            categories=self.categories | other.categories,
            reasons=self.reasons | other.reasons,
            full=self.full or other.full,
            reevaluate=self.reevaluate or other.reevaluate,
            realtime=self.realtime or other.realtime,
            lost=self.lost or other.lost,
            events=self.events + other.events,
            at=min(ats) if ats else 0.0,
            scoped=self._merged_scope(other),
        )

    def _merged_scope(self, other: Job) -> dict[Category, frozenset[str]]:
        """A category stays scoped only while every job naming it named paths."""
        if self.full or other.full:
            return {}
        out: dict[Category, frozenset[str]] = {}
        for c in self.categories | other.categories:
            sides = [j for j in (self, other) if c in j.categories]
            if all(c in j.scoped for j in sides):
                out[c] = frozenset().union(*(j.scoped[c] for j in sides))
        return out

    @property
    def reason(self) -> str:
        return ", ".join(sorted(self.reasons)) or "scan"


def write_report(out: IO[str], head: Report, summary: Mapping[str, int], findings: Iterable[Finding | str]) -> int:
    """`json.dumps(report.to_json(), sort_keys=True)`, the same text, written one finding at a time
    from `findings` (already in the report's order; each a Finding or its JSON text): a report of
    100,000 findings never exists whole, neither as findings nor as text. Returns how many it wrote."""
    top = head.to_json()
    top["summary"] = dict(summary)
    before, _, after = json.dumps({**top, "findings": 0}, sort_keys=True).partition('"findings": 0')
    out.write(before + '"findings": [')
    n = 0
    for f in findings:
        out.write((", " if n else "") + (f if isinstance(f, str) else json.dumps(f.to_json(), sort_keys=True)))
        n += 1
    out.write("]" + after)
    return n


def report_text(report: Report) -> str:
    """A whole report's text, through `write_report`."""
    buf = io.StringIO()
    write_report(buf, dataclasses.replace(report, findings=()), report.summary(), sort_findings(report.findings))
    return buf.getvalue()


def counted(head: Report, tally: Mapping[tuple[Category, Severity, bool], int]) -> Report:
    """A report whose findings only count (one stand-in per category, severity and acceptance,
    repeated): what the metrics read of a report, at 8 bytes a finding."""
    stand_ins = (
        itertools.repeat(
            Finding(
                id="", category=c, subject="", kind=Kind.CHANGED, expected="", actual="", message="",
                fix=Fix(nix="", command="", safe=False), severity=sev, accepted=acc,
            ),
            n,
        )
        for (c, sev, acc), n in sorted(tally.items(), key=lambda kv: (kv[0][0].value, kv[0][1], kv[0][2]))
    )  # fmt: skip
    return dataclasses.replace(head, findings=tuple(itertools.chain.from_iterable(stand_ins)))


def release_memory() -> None:
    """After a large capture: collect, then hand freed heap pages back to the system (glibc's
    malloc_trim), so the peak of one storm is not the resident size of the rest of the day."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the memory is reused by the next capture instead


class ComparatorRaised(Exception):
    """The etc comparator raised while its findings were being recorded."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Worker:
    def __init__(
        self,
        cfg: Config,
        opts: ScanOptions,
        state_dir: Path,
        store: Store,
        journal: JournalSink,
        requeue: Callable[[Job], None],
        degraded: Degradations | None = None,
    ) -> None:
        self.cfg, self.opts = cfg, opts
        self.state_dir = state_dir
        self.store = store
        self.journal = journal
        self.requeue = requeue
        self.tracker = Tracker(store, opts.policy.threshold)
        self.declared: DeclaredState | None = None
        self.scans_done = 0
        self.last_scan: tuple[float, str] | None = None
        self.last_full_scan: float | None = None
        self.error: str | None = None
        self.running: frozenset[Category] = frozenset()
        self.events_lost = 0
        self.scan_durations: dict[str, float] = {}
        self.captured_at: dict[str, float] = {}
        self.health: Callable[[], Health] | None = None
        self.on_scanned: Callable[[frozenset[Category]], None] | None = None
        self._attempted: set[tuple[str, str]] = set()
        self.degraded = degraded if degraded is not None else Degradations()
        self.busy_since: float | None = None  # monotonic start of the running job
        self.jobs_started = 0
        self.retry: tuple[float, frozenset[Category]] | None = None  # (monotonic when, categories)
        self._due: tuple[bool, bool] | None = None  # a publication waiting: (full, changed)
        self._published_at = float("-inf")
        self._publish_took = 0.0  # seconds the last publication took
        self._due_since = 0.0  # monotonic time the waiting publication was first requested
        self._idle_since = 0.0  # monotonic end of the last job
        self._retry_lock = threading.Lock()
        self._deliver_lock = threading.Lock()  # the cluster checks deliver from their own thread too
        self._kube: Any = None
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> Any:
        return self.opts.root

    def configure(self, cfg: Config, opts: ScanOptions) -> None:
        self.cfg, self.opts = cfg, opts
        self.tracker.threshold = opts.policy.threshold

    # --- thread --------------------------------------------------------------------------------
    def start(self, pending: Pending, stop: threading.Event) -> None:
        def loop() -> None:
            wait: float | None = None
            while not stop.is_set():
                job = pending.take(timeout=min(0.5, wait) if wait is not None else 0.5)
                if job is not None and job.scoped and time.monotonic() - self._idle_since < STORM_GAP:
                    job = self._gather(job, pending)
                if job is not None and not stop.is_set() and (job.categories or job.full or job.reevaluate):
                    self.run(job)
                wait = self.publish_due()
            if self._due is not None:  # stopping: what was scanned is published before we go
                self._published_at = float("-inf")
                self.publish_due(force=True)

        self._thread = threading.Thread(target=loop, name="nixdrift-worker", daemon=True)
        self._thread.start()

    def _gather(self, job: Job, pending: Pending) -> Job:
        """Events keep coming (this job was waiting as the last one ended): take what arrives for
        GATHER more before capturing, so a storm is a few captures, each with its bursts coalesced
        into one alert per directory, not a capture per handful of paths. A lone edit never waits."""
        deadline = time.monotonic() + GATHER
        while (left := deadline - time.monotonic()) > 0:
            more = pending.take(timeout=left)
            if more is not None:
                job = job.merge(more)
        return job

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stuck(self, now: float | None = None) -> float | None:
        """Seconds the running job has run when that is beyond `stuck_after()`, else None."""
        since = self.busy_since
        took = (time.monotonic() if now is None else now) - since if since is not None else 0.0
        return took if took > stuck_after() else None

    def join(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.alive()

    def close(self) -> None:
        if self._kube is not None:
            try:
                self._kube.close()
            except Exception:
                log.exception("closing the Kubernetes sink failed")

    # --- one job -------------------------------------------------------------------------------
    def run(self, job: Job) -> None:
        self.busy_since = time.monotonic()
        self.jobs_started += 1
        categories = frozenset(TABLE) if job.full else job.categories
        scoped = {c: paths for c, paths in job.scoped.items() if len(paths) <= SCOPED_MAX}
        try:
            self.running = categories
            if (job.reevaluate or self.declared is None) and self._evaluate(job) and not job.full:
                categories = frozenset(TABLE)
                scoped = {}  # the declaration changed: every path may judge differently
            if self.declared is None:
                return
            self._scan(job, categories, self.declared, scoped)
        except sqlite3.Error as exc:
            log.exception("writing the history failed (%s)", job.reason)
            self._failed(categories, "database", f"history database write failed: {exc}")
        except Exception as exc:
            log.exception("scan failed (%s)", job.reason)
            self.error = f"scan failed: {type(exc).__name__}: {exc}"
            self._failed(categories, "worker", f"{self.error} ({job.reason})")
        else:
            for key in ("database", "worker"):
                self.recover(key)
        finally:
            self.running = frozenset()
            self.busy_since = None
            self._idle_since = time.monotonic()
            self.scans_done += 1

    def _failed(self, categories: frozenset[Category], key: str, text: str) -> None:
        """Say it (STATUS, journal, report, metrics), forget what memory holds beyond the database,
        and try the same categories again shortly: nothing a failed write skipped stays unrecorded."""
        self.degrade(key, text)
        try:
            self.tracker.reload()
        except sqlite3.Error as exc:
            log.error("cannot re-read the history database either: %s", exc)
        if self.declared is not None:  # the metrics file is not in the database: it can say so
            try:
                self._metrics(counted(self.head(self.declared), self.tracker.tally()))
            except Exception:
                log.exception("writing the metrics after a failure failed too")
        with self._retry_lock:
            again = categories | (self.retry[1] if self.retry else frozenset())
            self.retry = (time.monotonic() + RETRY_AFTER, again)

    def take_retry(self, now: float) -> frozenset[Category]:
        """Categories whose failed job is due to be tried again (called by the main thread)."""
        with self._retry_lock:
            if self.retry is None or now < self.retry[0]:
                return frozenset()
            due, self.retry = self.retry[1], None
            return due

    def degrade(self, key: str, text: str) -> None:
        if self.degraded.set(key, text):
            log.error("degraded: %s: %s", key, text)
            alert = Alert(Event.DEGRADED, f"degraded: {key}: {text}", Severity.HIGH, extra={"NIXDRIFT_DEGRADED": key})
            self.journal.send(alert)
            with contextlib.suppress(sqlite3.Error):  # the database may be what is degraded: the journal has it
                self.store.events([("degraded", None, "", f"{key}: {text}")])

    def recover(self, key: str) -> None:
        was = self.degraded.clear(key)
        if was is not None:
            log.warning("recovered: %s (was: %s)", key, was)
            text = f"recovered: {key} (was: {was})"
            self.journal.send(Alert(Event.RECOVERED, text, Severity.INFO, extra={"NIXDRIFT_DEGRADED": key}))
            try:
                self.store.events([("recovered", None, "", f"{key} (was: {was})")])
            except sqlite3.Error:
                log.warning("cannot record the recovery of %s", key)

    def checkpoint(self, step: str) -> None:
        """The test-only pause (PAUSE_ENV); a no-op unless the variable names this step."""
        want = os.environ.get(PAUSE_ENV)
        if not want:
            return
        name, _, nth = want.partition("@")
        if name != step or (nth and nth != str(self.jobs_started)):
            return
        marker = self.state_dir / f"paused-at-{step}"
        marker.write_text(f"{os.getpid()}\n")
        log.warning("test pause at %s (job %d): waiting for %s to go", step, self.jobs_started, marker)
        while marker.exists():
            time.sleep(0.02)

    def _evaluate(self, job: Job) -> bool:
        """Evaluate the flake (through the cache); True when the declaration changed."""
        try:
            declared = pipeline.load_declared(self.opts)
        except (NixdriftError, OSError) as exc:
            text = f"cannot evaluate {self.opts.flake}#{self.opts.host}: {exc}"
            log.error("%s", text)
            if self.error != text:
                self.store.events([("scan-failed", None, "", text)])
                self.journal.send(Alert(Event.SCAN_FAILED, text, Severity.HIGH))
            self.error = text
            return False
        old = self.declared
        self.declared = declared
        self.error = None
        changed = old is not None and dataclasses.replace(declared, flake=old.flake) != old
        if changed:
            log.warning("the flake's declaration changed (%s): rescanning everything", job.reason)
        return changed

    def _scan(
        self,
        job: Job,
        categories: frozenset[Category],
        declared: DeclaredState,
        scoped: Mapping[Category, frozenset[str]] | None = None,
    ) -> None:
        ordered = [c for c in TABLE if c in categories]
        seq = self.store.begin_scan((c.value for c in ordered), job.reason)
        started = time.monotonic()
        self.checkpoint("capture")
        parts = self._capture_paths(declared, {c: p for c, p in (scoped or {}).items() if c in categories})
        whole = [c for c in ordered if c not in parts]
        captured = pipeline.capture(self.root, declared, whole, cache_dir=self.opts.cache_dir)  # + stat cache
        # /etc read whole (an interval, a storm: 100,000 files) is compared as the history records it,
        # a page at a time (`Tracker.reconcile` reads a generator); the other categories are few
        etc = captured.get(Category.ETC)
        lazy = etc if etc is not None and etc.unavailable is None and etc.data is not None else None
        compared = pipeline.compare_sections(
            declared, {c: sec for c, sec in captured.items() if lazy is None or c is not Category.ETC}
        )
        sections = {
            **compared.sections,
            **({Category.ETC: lazy} if lazy is not None else {}),
            **{c: s for c, (s, _f, _o) in parts.items()},
        }
        # the policy's view (exceptions, severity overrides) is all the history needs of a report:
        # the first and last seen stamps build_report would add are the tracker's to set
        few = self.opts.policy.apply([*compared.findings, *(f for _s, fs, _o in parts.values() for f in fs)])
        # the history needs of a section only whether it was read and its problems: what was read
        # (all of /etc in a storm, but for the lazy comparison) goes before the history is written
        sections = {c: Section(c, None, sec.unavailable, sec.problems) for c, sec in sections.items()}
        owners = {c: owner for c, (_s, _f, owner) in parts.items()}
        del captured, compared, parts, etc
        budget = [MAX_ATTRIBUTIONS]

        def attribute(f: Any) -> str:
            budget[0] -= 1
            if budget[0] < 0:
                return "unavailable: too many changes at once to look each one up"
            return attribution.attribute(self.root, f, job.at or time.time())

        source = Source.REALTIME if job.realtime and not job.full else Source.SCAN
        record = functools.partial(self.tracker.reconcile, source=source, attribute=attribute, scoped=owners)
        if lazy is None:
            outcome = record(sections, few)
        else:
            try:
                outcome = record(sections, itertools.chain(few, self._etc_findings(declared, lazy)))
            except ComparatorRaised as raised:  # rolled back: recorded as compare_sections would have
                problem = pipeline.comparator_failed(raised.error)
                log.error("etc: %s", problem)
                etc_failed: Section[Any] = Section(Category.ETC, None, f"etc {problem}", (*lazy.problems, problem))
                outcome = record({**sections, Category.ETC: etc_failed}, few)
                sections[Category.ETC] = etc_failed
        del few, lazy
        if whole or outcome.new_count + outcome.resolved_count > BIG:
            release_memory()
        self.checkpoint("record")  # recorded, alerts queued, none delivered yet
        self.deliver()
        duration = time.monotonic() - started
        failed = [c.value for c, s in sections.items() if scan_failed(c, s)]
        self.store.end_scan(seq, not failed, ", ".join(failed) or None, duration)
        now = time.time()
        for c in whole:  # a category captured at a few paths is not captured: its interval still runs
            self.scan_durations[c.value] = duration
            self.captured_at[c.value] = now
        if categories >= frozenset(TABLE) and not owners:
            self.last_full_scan = now
        if self.on_scanned is not None and whole:
            self.on_scanned(frozenset(whole))
        self.last_scan = (now, job.reason)
        at = (
            "".join(f" ({c.value} at {len(p)} path(s))" for c, p in sorted(scoped.items()) if c in owners)
            if scoped
            else ""
        )
        log.info("scanned %s%s (%s) in %.2f s", ",".join(c.value for c in ordered), at, job.reason, duration)
        remediating = self.cfg.auto_remediate and self.root.is_live
        self.request_publish(full=categories >= frozenset(TABLE), changed=outcome.changed, now=remediating)
        # revert commands name the host's own paths: they never act on a tree read with --root
        if remediating:
            self._remediate(declared)

    def _etc_findings(self, declared: DeclaredState, live: Section[Any]) -> Iterator[Finding]:
        """The etc comparator's findings of a whole capture, through the policy, a page at a time;
        what it raises comes out as ComparatorRaised (the reconcile reading them rolls back)."""
        found = c_etc.iter_compare(declared, live)
        while True:
            try:
                page = list(itertools.islice(found, PAGE))
            except Exception as exc:  # one broken comparator must not void the scan
                raise ComparatorRaised(exc) from exc
            if not page:
                return
            yield from self.opts.policy.apply(f for f in page if f.category is Category.ETC)

    def _capture_paths(
        self, declared: DeclaredState, scoped: Mapping[Category, frozenset[str]]
    ) -> dict[Category, tuple[Section[Any], tuple[Finding, ...], Scoped]]:
        """The scoped categories captured at their events' paths: (section, findings, which recorded
        findings these replace). One that cannot be (its capture or comparator raised, /etc itself
        changed) is left out: the caller captures it whole, the truth."""
        out: dict[Category, tuple[Section[Any], tuple[Finding, ...], Scoped]] = {}
        for category, rels in scoped.items():
            if category is not Category.ETC:
                continue
            try:
                # None: only /etc itself was named (its listing changed): its children have events
                scope = etc_paths.scope_of(self.root, rels) or etc_paths.Scope(frozenset(), frozenset())
                section = etc_paths.capture_paths(self.root, declared, scope)
                if section.unavailable is not None or section.data is None:
                    continue
                found = c_etc.compare_paths(declared, section, scope.holds)
            except Exception:
                log.exception("capturing /etc at %d path(s) failed: capturing it whole", len(rels))
                continue
            shown = scope.shown()
            prefixes = tuple(f"etc/{p}" for p in shown.paths())
            out[category] = (section, found, Scoped(prefixes, functools.partial(c_etc.owned, inside=shown.holds)))
        return out

    def deliver(self) -> int:
        """Send the alerts recorded but not yet delivered (this scan's, or a previous life's), oldest
        first, marking each batch delivered once sent; returns how many went out."""
        sent = 0
        with self._deliver_lock:
            while batch := self.store.undelivered(DELIVER_BATCH):
                for _seq, body in batch:
                    try:
                        alert = Alert.from_json(json.loads(body))
                    except (ValueError, KeyError, TypeError) as exc:
                        log.error("an alert in the outbox cannot be read (%s); skipped: %.200s", exc, body)
                        continue
                    self.journal.send(alert)
                self.store.delivered(seq for seq, _body in batch)
                sent += len(batch)
        return sent

    def request_publish(self, *, full: bool, changed: bool, now: bool = False) -> None:
        """The report, its metrics and the fleet copy are rewritten at most once per PUBLISH_EVERY
        of activity: a storm of events is a storm of captures, not of report files."""
        was = self._due or (False, False)
        if self._due is None:
            self._due_since = time.monotonic()
        self._due = (was[0] or full, was[1] or changed)
        if now:  # otherwise the worker loop publishes, once this scan's capture has been let go
            self._published_at = float("-inf")
            self.publish_due(force=True)

    def publish_due(self, force: bool = False) -> float | None:
        """Publish what waits if its time has come; else seconds until it has (None: nothing waits)."""
        if self._due is None or self.declared is None:
            return None
        now = time.monotonic()
        wait = self._published_at + max(PUBLISH_EVERY, (1 + PUBLISH_SHARE) * self._publish_took) - now
        if not force and now - self._due_since < PUBLISH_LATEST:
            quiet, latest = self._idle_since + PUBLISH_QUIET - now, self._due_since + PUBLISH_LATEST - now
            wait = max(wait, min(quiet, latest))
        if wait > 0:
            return wait
        (full, changed), self._due = self._due, None
        self._published_at = time.monotonic()
        try:
            self._publish(self.declared, full=full, changed=changed)
            self._publish_took = time.monotonic() - self._published_at
        except sqlite3.Error as exc:
            self._due = (full, changed)
            self.degrade("database", f"history database write failed: {exc}")
            return RETRY_AFTER
        except Exception:  # never let the worker thread die of a report: say it, go on scanning
            log.exception("publishing the report failed")
        return None

    # --- outside view --------------------------------------------------------------------------
    def head(self, declared: DeclaredState) -> Report:
        """The report without its findings (the database has them: `report` or `write_report`)."""
        t = self.tracker
        degraded = self.degraded.current()
        return Report(
            host=declared.host,
            generated_at=pipeline.now_iso(),
            flake=declared.flake,
            generations=pipeline.generations_of(self.root, declared),
            categories=dict(t.status),
            findings=(),
            threshold=self.opts.policy.threshold,
            problems=tuple(
                f"{c.value}: {p}" for c, ps in sorted(t.problems.items(), key=lambda kv: kv[0].value) for p in ps
            )
            + self._watch_problems()
            + tuple(f"daemon degraded: {k}: {degraded[k]}" for k in sorted(degraded)),
            scanned=scan_target.capture(self.root),
        )

    def report(self, declared: DeclaredState) -> Report:
        """The whole report, every finding in memory: only for the sinks that need them all (the
        report directory, the cluster); the history's copy and the metrics are written without."""
        return dataclasses.replace(self.head(declared), findings=tuple(self.tracker.iter_current()))

    def _watch_problems(self) -> tuple[str, ...]:
        """A degraded watch (polling after the inotify limit, a tree not watched) is said in the report."""
        health = self.health() if self.health else None
        if health is None or not (health.polling or health.dead):
            return ()
        return (f"realtime: {health.line()}",)

    def _publish(self, declared: DeclaredState, *, full: bool, changed: bool) -> None:
        self.tracker.accepted_changed()
        head = self.head(declared)
        staged = self.state_dir / ".report.json.part"
        try:
            with staged.open("w", encoding="utf-8") as out:
                n = write_report(out, head, self.tracker.summary(), self.tracker.iter_current_json())
            answering.retire(self.state_dir)  # no answer outlives the report it was made of, even in a crash
            self.store.put_meta_file("report", staged)
        except OSError as exc:  # beside the database, on its disk: a full disk is the database's
            raise sqlite3.OperationalError(f"cannot stage the report in {staged.parent}: {exc}") from exc
        finally:
            staged.unlink(missing_ok=True)
        self.store.put_meta("captured_at", json.dumps(self.captured_at, sort_keys=True))
        answering.publish(self.state_dir, self.store, self.cfg, self.opts, self.captured_at, findings=n)
        self._metrics(counted(head, self.tracker.tally()))
        log.info("published the report (%d findings)", n)
        whole: Report | None = None
        if full and self.cfg.report_dir:
            try:
                from nixdrift.report import write_all

                whole = self.report(declared)
                write_all(whole, Path(self.cfg.report_dir))
            except Exception:
                log.exception("writing the reports into %s failed", self.cfg.report_dir)
        if self.cfg.kubernetes.enable:
            self._kube_submit(whole or self.report(declared), changed)
        if n > BIG:
            del whole
            release_memory()

    def _metrics(self, report: Report) -> None:
        try:
            from nixdrift.report.metrics import DaemonStats, write_prometheus
        except ImportError:
            log.debug("nixdrift.report.metrics is not available; no Prometheus textfile")
            return
        health = self.health() if self.health else None
        stats = DaemonStats(
            scan_durations=dict(self.scan_durations),
            events_lost_total=self.events_lost,
            watch_healthy=dict(health.trees) if health else {},
            events_total=health.events_total if health else 0,
            last_full_scan=self.last_full_scan,
            degraded=dict(self.degraded.current()),
            fleet_dropped_total=int(getattr(self._kube, "dropped", 0)),
        )
        out = Path(self.cfg.prometheus_textfile_dir or self.state_dir) / "nixdrift.prom"
        try:
            write_prometheus(report, out, stats)
        except Exception:
            log.exception("writing %s failed", out)

    def _kube_submit(self, report: Report, changed: bool) -> None:
        try:
            if self._kube is None:
                from nixdrift.sinks.kube import KubeSink  # type: ignore[attr-defined,unused-ignore]

                self._kube = KubeSink(self.cfg.kubernetes, self.state_dir, __version__)
            self._kube.submit(report, changed=changed)
        except ImportError:
            log.warning("the Kubernetes sink is not available in this build")
        except Exception:
            log.exception("submitting the report to Kubernetes failed")

    def _remediate(self, declared: DeclaredState) -> None:
        refused = remediate.refusal(self.store)  # the report just stored: this machine's live root?
        if refused is not None:
            log.warning("auto-remediation skipped: %s", refused)
            return
        for f in self.tracker.findings():
            if not remediate.eligible(f) or (f.id, f.actual) in self._attempted:
                continue
            self._attempted.add((f.id, f.actual))
            outcome = remediate.verify(
                self.store, self.root, declared, self.opts.policy, remediate.apply(self.store, f)
            )
            self.store.events(
                [("remediated", f, "", f"{f.fix.command} -> rc {outcome.returncode}, verified {outcome.verified}")]
            )
            if not outcome.verified:
                text = f"remediation of {f.id} did not remove the drift (command: {f.fix.command})"
                self.journal.send(Alert(Event.REMEDIATION_FAILED, text, f.severity, finding=f))
            self.requeue(Job(frozenset({f.category}), frozenset({"remediation"})))
