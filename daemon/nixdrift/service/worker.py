"""The worker thread: evaluate, capture, compare, reconcile, alert, publish. One job at a time."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, assert_never

from nixdrift import __version__, pipeline
from nixdrift import target as scan_target
from nixdrift.categories import TABLE
from nixdrift.config import Config
from nixdrift.declared.model import DeclaredState
from nixdrift.errors import NixdriftError
from nixdrift.models import Category, Report, Severity, Source, sort_findings
from nixdrift.pipeline import ScanOptions
from nixdrift.service import attribution, remediate
from nixdrift.service.history import Store
from nixdrift.service.routes import Action
from nixdrift.service.tracker import Tracker
from nixdrift.sinks.journald import Alert, Event, JournalSink

if TYPE_CHECKING:
    from nixdrift.service.loop import Pending
    from nixdrift.service.watch import Health

log = logging.getLogger(__name__)

MAX_ATTRIBUTIONS = 20  # per job: a storm is not worth a journal query per file


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

    @classmethod
    def of(cls, action: Action, categories: frozenset[Category], path: str) -> Job:
        now = time.time()
        match action:
            case Action.SWITCH:
                return cls(full=True, reasons=frozenset({f"system switch ({path})"}), realtime=True, at=now)
            case Action.REEVALUATE:
                return cls(categories, frozenset({f"flake changed ({path})"}), reevaluate=True, realtime=True, at=now)
            case Action.CAPTURE:
                return cls(categories, frozenset({"event"}), realtime=True, at=now)
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
        )

    @property
    def reason(self) -> str:
        return ", ".join(sorted(self.reasons)) or "scan"


class Worker:
    def __init__(
        self,
        cfg: Config,
        opts: ScanOptions,
        state_dir: Path,
        store: Store,
        journal: JournalSink,
        requeue: Callable[[Job], None],
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
            while not stop.is_set():
                job = pending.take(timeout=0.5)
                if job is not None and not stop.is_set() and (job.categories or job.full or job.reevaluate):
                    self.run(job)

        self._thread = threading.Thread(target=loop, name="nixdrift-worker", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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
        try:
            categories = frozenset(TABLE) if job.full else job.categories
            self.running = categories
            if (job.reevaluate or self.declared is None) and self._evaluate(job) and not job.full:
                categories = frozenset(TABLE)
            if self.declared is None:
                return
            self._scan(job, categories, self.declared)
        except Exception as exc:
            log.exception("scan failed (%s)", job.reason)
            self.error = f"scan failed: {type(exc).__name__}: {exc}"
        finally:
            self.running = frozenset()
            self.scans_done += 1

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

    def _scan(self, job: Job, categories: frozenset[Category], declared: DeclaredState) -> None:
        ordered = [c for c in TABLE if c in categories]
        seq = self.store.begin_scan((c.value for c in ordered), job.reason)
        started = time.monotonic()
        compared = pipeline.compare_sections(declared, pipeline.capture(self.root, declared, ordered))
        sections, findings = compared.sections, compared.findings  # a failed comparator: unavailable
        report = pipeline.build_report(declared, self.root, sections, findings, self.opts.policy)
        budget = [MAX_ATTRIBUTIONS]

        def attribute(f: Any) -> str:
            budget[0] -= 1
            if budget[0] < 0:
                return "unavailable: too many changes at once to look each one up"
            return attribution.attribute(self.root, f, job.at or time.time())

        source = Source.REALTIME if job.realtime and not job.full else Source.SCAN
        outcome = self.tracker.reconcile(sections, report.findings, source=source, attribute=attribute)
        for alert in outcome.alerts:
            self.journal.send(alert)
        duration = time.monotonic() - started
        failed = [c.value for c, s in sections.items() if (s.unavailable or "").startswith("capture failed")]
        self.store.end_scan(seq, not failed, ", ".join(failed) or None, duration)
        now = time.time()
        for c in ordered:
            self.scan_durations[c.value] = duration
            self.captured_at[c.value] = now
        if categories >= frozenset(TABLE):
            self.last_full_scan = now
        if self.on_scanned is not None:
            self.on_scanned(frozenset(ordered))
        self.last_scan = (now, job.reason)
        log.info("scanned %s (%s) in %.2f s", ",".join(c.value for c in ordered), job.reason, duration)
        self._publish(declared, full=categories >= frozenset(TABLE), changed=outcome.changed)
        # revert commands name the host's own paths: they never act on a tree read with --root
        if self.cfg.auto_remediate and self.root.is_live:
            self._remediate(declared)

    # --- outside view --------------------------------------------------------------------------
    def report(self, declared: DeclaredState) -> Report:
        t = self.tracker
        return Report(
            host=declared.host,
            generated_at=pipeline.now_iso(),
            flake=declared.flake,
            generations=pipeline.generations_of(self.root, declared),
            categories=dict(t.status),
            findings=sort_findings(list(t.active.values())),
            threshold=self.opts.policy.threshold,
            problems=tuple(
                f"{c.value}: {p}" for c, ps in sorted(t.problems.items(), key=lambda kv: kv[0].value) for p in ps
            )
            + self._watch_problems(),
            scanned=scan_target.capture(self.root),
        )

    def _watch_problems(self) -> tuple[str, ...]:
        """A degraded watch (polling after the inotify limit, a tree not watched) is said in the report."""
        health = self.health() if self.health else None
        if health is None or not (health.polling or health.dead):
            return ()
        return (f"realtime: {health.line()}",)

    def _publish(self, declared: DeclaredState, *, full: bool, changed: bool) -> None:
        self.tracker.accepted_changed()
        report = self.report(declared)
        self.store.put_meta("report", json.dumps(report.to_json(), sort_keys=True))
        self.store.put_meta("captured_at", json.dumps(self.captured_at, sort_keys=True))
        self._metrics(report)
        if full and self.cfg.report_dir:
            try:
                from nixdrift.report import write_all

                write_all(report, Path(self.cfg.report_dir))
            except Exception:
                log.exception("writing the reports into %s failed", self.cfg.report_dir)
        if self.cfg.kubernetes.enable:
            self._kube_submit(report, changed)

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
        for f in sorted(self.tracker.active.values(), key=lambda f: f.id):
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
