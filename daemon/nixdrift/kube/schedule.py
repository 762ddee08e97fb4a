"""The daemon's cluster checks (`kube:` in the config): per-category intervals, one run at a time,
and meta-monitoring.

Each category is checked on its own interval (NetworkPolicies, RBAC and Secrets every 5 min,
resources every 15, CronJobs, env and the rest hourly, orphans daily, everything every 6 h); the
checks due together run as one scan that lists only the kinds they need. A mutex keeps a slow run
from overlapping the next (a run that finds it held is skipped and counted). A check that fails
(the scan raised, or a category it covers could not be read) or overruns its interval is itself a
finding (`kube-checks/<check>/failed|overrun`) and a metric, so drift that goes unseen is seen.

The latest findings of every category are kept between runs, so each report shows the whole
cluster, however recently each part was looked at. In the daemon they go through the host's
history (`service.tracker.Tracker` on the same SQLite database): first/last seen, counts,
escalation of repeated drift, acceptances, events and the journald alert outbox are the host's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nixdrift.kube.rules import kfinding
from nixdrift.kube.scan import KubeOptions, now_iso, scan
from nixdrift.models import Category, Finding, FlakeInfo, Generations, Kind, Report, Section, sort_findings

if TYPE_CHECKING:
    from nixdrift.service.history import Store
    from nixdrift.service.tracker import Tracker

log = logging.getLogger(__name__)

FULL = "full"


@dataclass(slots=True)
class CheckStats:
    runs: int = 0
    failures: int = 0
    overruns: int = 0
    last_duration: float = 0.0
    last_success: float | None = None  # wall clock (Unix time)
    last_error: str = ""


@dataclass(slots=True)
class KubeScheduler:
    opts: KubeOptions
    intervals: Mapping[str, int]  # category value or "full" -> seconds
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = lambda: datetime.now(UTC)
    scan_fn: Callable[..., Report] = scan
    api: Any = None
    on_report: Callable[[Report], None] = lambda _r: None
    stats: dict[str, CheckStats] = field(default_factory=dict)
    skipped_overlaps: int = 0
    _next: dict[str, float] = field(default_factory=dict)
    _latest: dict[Category, tuple[str, tuple[Finding, ...]]] = field(default_factory=dict)
    _meta: dict[str, Finding] = field(default_factory=dict)
    _mutex: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    last_report: Report | None = None
    history_path: Path | None = None  # first/last seen and count of each finding, kept across restarts
    _seen: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # id -> first, last, count
    # the daemon's history database: findings, events and alerts as the host's (then history_path is unused)
    store: Store | None = None
    deliver: Callable[[], int] | None = None  # sends the alerts the tracker queued (the worker's outbox)
    _tracker: Tracker | None = None

    def __post_init__(self) -> None:
        if self.store is not None:
            from nixdrift.service.tracker import Tracker

            self._tracker = Tracker(self.store, self.opts.policy.threshold, kube=True)
        else:
            self._seen = load_history(self.history_path)

    def due(self, now: float) -> list[str]:
        return sorted(name for name in self.intervals if self._next.get(name, float("-inf")) <= now)

    def seconds_to_next(self, now: float) -> float:
        return max(0.0, min((self._next.get(n, now) for n in self.intervals), default=60.0) - now)

    def run_due(self) -> Report | None:
        """Run the checks that are due as one scan; None when nothing is due or a run is going on."""
        if not self._mutex.acquire(blocking=False):
            self.skipped_overlaps += 1
            log.warning("kube: a check is still running; this one is skipped (counted)")
            return None
        try:
            return self._run_due_locked()
        finally:
            self._mutex.release()

    def _categories_of(self, checks: list[str]) -> frozenset[Category]:
        if FULL in checks:
            return frozenset(c for c in Category.kube() if c is not Category.KUBE_CHECKS)
        return frozenset(Category(c) for c in checks)

    def _run_due_locked(self) -> Report | None:
        start = self.clock()
        checks = self.due(start)
        if not checks:
            return None
        categories = self._categories_of(checks)
        opts = replace(self.opts, categories=categories)
        error = ""
        report: Report | None = None
        try:
            report = self.scan_fn(opts, api=self.api, now=self.wall())
        except Exception as exc:  # noqa: BLE001 - any failure is reported as a finding and a metric
            error = f"{type(exc).__name__}: {exc}"
            log.error("kube: checks %s failed: %s", ", ".join(checks), error)
        end = self.clock()
        duration = end - start
        for name in checks:
            self._next[name] = start + self.intervals[name]
        unread = {c: s for c, s in (report.categories.items() if report else ()) if s.startswith("unavailable")}
        for name in checks:
            covered = self._categories_of([name])
            why = error or "; ".join(f"{c.value} {s}" for c, s in sorted(unread.items(), key=lambda kv: kv[0].value)
                                     if c in covered)  # fmt: skip
            self._record(name, duration, why)
        for c in categories:
            if report is not None:
                self._latest[c] = (
                    report.categories.get(c, "ok"),
                    tuple(f for f in report.findings if f.category is c),
                )
            else:  # not read this time: unavailable, never "ok"; what was found before is kept
                self._latest[c] = (f"unavailable: {error}", self._latest.get(c, ("", ()))[1])
        self.last_report = self._combined(report, categories)
        self.on_report(self.last_report)
        return self.last_report

    def _record(self, name: str, duration: float, error: str) -> None:
        st = self.stats.setdefault(name, CheckStats())
        st.runs += 1
        st.last_duration = duration
        interval = self.intervals[name]
        self._meta.pop(f"{name}/failed", None)
        self._meta.pop(f"{name}/overrun", None)
        if error:
            st.failures += 1
            st.last_error = error
            self._meta[f"{name}/failed"] = kfinding(
                rule_name="kube-check-failed",
                id=f"kube-checks/{name}/failed",
                category=Category.KUBE_CHECKS,
                subject=f"check {name}",
                kind=Kind.CHANGED,
                expected="the check runs",
                actual="failed",
                message=f"the cluster check {name} failed: {error}",
                evidence={"check": name, "failures": str(st.failures)},
            )
        else:
            st.last_success = self.wall().timestamp()
            st.last_error = ""
        if duration > interval:
            st.overruns += 1
            self._meta[f"{name}/overrun"] = kfinding(
                rule_name="kube-check-overrun",
                id=f"kube-checks/{name}/overrun",
                category=Category.KUBE_CHECKS,
                subject=f"check {name}",
                kind=Kind.CHANGED,
                expected=f"<= {interval} s",
                actual=f"{duration:.1f} s",
                message=f"the cluster check {name} took {duration:.1f} s, longer than its interval of {interval} s",
                evidence={"check": name, "overruns": str(st.overruns)},
            )

    def _combined(self, report: Report | None, ran: frozenset[Category] = frozenset()) -> Report:
        findings = [f for _s, fs in self._latest.values() for f in fs] + list(self._meta.values())
        categories = {c: s for c, (s, _f) in self._latest.items()}
        categories[Category.KUBE_CHECKS] = "drift" if self._meta else "ok"
        if self._tracker is not None:
            findings, categories = self._track(findings, categories, ran | {Category.KUBE_CHECKS})
        else:
            findings = self._remember(findings)
        base = report or self.last_report
        return Report(
            host=base.host if base else (self.opts.cluster_name or "cluster"),
            generated_at=now_iso(self.wall()),
            flake=base.flake if base else FlakeInfo(reference=str(self.opts.manifests)),
            generations=Generations(None, None, None),
            categories=categories,
            findings=sort_findings(findings),
            threshold=self.opts.policy.threshold,
            problems=base.problems if base else (),
        )

    def _track(
        self, findings: list[Finding], categories: dict[Category, str], ran: frozenset[Category]
    ) -> tuple[list[Finding], dict[Category, str]]:
        """Record the run in the history database as the host's scans are, then send the alerts it
        queued. Only the categories read in this run count as captured: the others keep their
        findings and their last sighting, and one that could not be read resolves nothing."""
        tracker = self._tracker
        assert tracker is not None
        sections: dict[Category, Section[Any]] = {
            c: Section(c, None, unavailable=s.removeprefix("unavailable: ") if s.startswith("unavailable") else None)
            for c, s in categories.items()
            if c in ran
        }
        tracker.threshold = self.opts.policy.threshold
        try:
            tracker.accepted_changed()  # `nixdrift accept` on a category not read in this run
            tracker.reconcile(sections, findings)
        except Exception:  # the report still goes out; the history catches up at the next run
            log.exception("kube: recording the cluster's findings in the history failed")
            tracker.reload()
            return findings, categories
        if self.deliver is not None:
            try:
                self.deliver()
            except Exception:  # the outbox keeps them: the next delivery sends them
                log.exception("kube: delivering the cluster's alerts failed")
        current = tracker.current()
        drifted = {f.category for f in current if not f.accepted}
        status = {
            c: s if s.startswith("unavailable") else ("drift" if c in drifted else "ok") for c, s in categories.items()
        }
        return current, status

    def _remember(self, findings: list[Finding]) -> list[Finding]:
        """Each finding with when it was first and last seen and in how many runs; ids gone are forgotten."""
        stamp = now_iso(self.wall())
        seen: dict[str, tuple[str, str, int]] = {}
        out = []
        for f in findings:
            first, _last, count = self._seen.get(f.id, (stamp, stamp, 0))
            seen[f.id] = (first, stamp, count + 1)
            out.append(f.with_(first_seen=first, last_seen=stamp, count=count + 1))
        self._seen = seen
        save_history(self.history_path, seen)
        return out

    # -- metrics ------------------------------------------------------------------------------

    def metrics_text(self) -> str:
        """Prometheus text of the checks themselves (the findings' metrics come with the report)."""
        lines: list[str] = []

        def metric(name: str, kind: str, doc: str, values: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {doc}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f'{name}{{check="{check}"}} {value:g}' for check, value in values)

        items = sorted(self.stats.items())
        metric("nixdrift_kube_check_runs_total", "counter", "Cluster check runs.", [(n, s.runs) for n, s in items])
        metric("nixdrift_kube_check_failures_total", "counter", "Cluster check runs that failed.",
               [(n, s.failures) for n, s in items])  # fmt: skip
        metric("nixdrift_kube_check_overruns_total", "counter", "Cluster check runs longer than their interval.",
               [(n, s.overruns) for n, s in items])  # fmt: skip
        metric("nixdrift_kube_check_duration_seconds", "gauge", "Duration of the last run.",
               [(n, s.last_duration) for n, s in items])  # fmt: skip
        metric("nixdrift_kube_check_last_success_timestamp_seconds", "gauge", "Unix time of the last good run.",
               [(n, s.last_success) for n, s in items if s.last_success is not None])  # fmt: skip
        lines.append("# HELP nixdrift_kube_check_skipped_overlaps_total Runs skipped: the previous was still going.")
        lines.append("# TYPE nixdrift_kube_check_skipped_overlaps_total counter")
        lines.append(f"nixdrift_kube_check_skipped_overlaps_total {self.skipped_overlaps}")
        return "\n".join(lines) + "\n"

    # -- the loop -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nixdrift-kube-checks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:  # the loop outlives any one run; the run itself reports failures
                log.exception("kube: scheduler step failed")
            self._stop.wait(max(0.05, self.seconds_to_next(self.clock())))


def load_history(path: Path | None) -> dict[str, tuple[str, str, int]]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
        return {str(k): (str(v[0]), str(v[1]), int(v[2])) for k, v in data.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:  # a bad file: start afresh, say so
        log.warning("kube: cannot read %s (%s); first-seen times start again", path, exc)
        return {}


def save_history(path: Path | None, seen: Mapping[str, tuple[str, str, int]]) -> None:
    if path is None:
        return
    from nixdrift.report.metrics import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(seen, sort_keys=True).encode(), 0o600)
    except OSError as exc:
        log.warning("kube: cannot write %s: %s", path, exc)


def write_outputs(report: Report, scheduler: KubeScheduler, out: Path) -> None:
    """drift-report.json/.md and nixdrift-kube.prom (the report's metrics plus the checks')."""
    from nixdrift.report import jsonfmt, markdown
    from nixdrift.report.metrics import atomic_write, render_prometheus

    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "drift-report.json", jsonfmt.render(report).encode(), 0o644)
    atomic_write(out / "drift-report.md", markdown.render(report).encode(), 0o644)
    prom = render_prometheus(report) + scheduler.metrics_text()
    atomic_write(out / "nixdrift-kube.prom", prom.encode(), 0o644)


def start_from_config(
    cfg: Any, state_dir: Path, *, store: Store | None = None, deliver: Callable[[], int] | None = None
) -> KubeScheduler | None:
    """The daemon's cluster checks, when `kube.enable` is set: reports in <reportDir|stateDir>/kube,
    and PolicyReports/Reports (as `reportFormat` says) when `kubernetes.enable` is set too. With the
    daemon's `store` (and its `deliver`), findings go into its history and alert through journald."""
    kube = cfg.kube
    if not kube.enable:
        return None
    if not kube.manifests:
        log.error("kube: enable is set but kube.manifests is not; cluster checks are off")
        return None
    from nixdrift.errors import NixdriftError
    from nixdrift.sinks.kube import api_client

    try:
        api = api_client(kube.kubeconfig, in_cluster_fallback=True)
    except NixdriftError as exc:  # the host's monitoring goes on; each cluster run fails and says so
        log.error("kube: %s; every cluster check will fail until it loads", exc)
        api = None
    opts = KubeOptions(
        manifests=Path(kube.manifests),
        namespace=kube.namespace,
        kubeconfig=kube.kubeconfig,
        policy=cfg.policy(),
        cluster_name=kube.cluster or "",
        secret_max_age_days=kube.secret_max_age_days,
    )
    out = Path(cfg.report_dir or state_dir) / "kube"
    scheduler = KubeScheduler(
        opts=opts,
        intervals=dict(kube.intervals),
        api=api,
        history_path=Path(state_dir) / "kube-history.json",
        store=store,
        deliver=deliver,
    )

    publisher: list[Any] = []  # the fleet cluster's client, made when first needed

    def publish(report: Report) -> None:
        if kube.auto_remediate:  # low severity only, dry run first; the next run sees the result
            from nixdrift.kube.remediate import remediate_low

            try:
                for line in remediate_low(report, opts, api).lines():
                    log.warning("kube: %s", line)
            except Exception:  # a failed revert leaves the finding in place; it is reported as such
                log.exception("kube: automatic revert failed")
        write_outputs(report, scheduler, out)
        if cfg.kubernetes.enable:  # to the fleet's cluster (`kubernetes.kubeconfig`), which may be another one
            from nixdrift.sinks.kube import apply
            from nixdrift.sinks.openreports import cluster_objects

            try:
                if not publisher:
                    publisher.append(api_client(cfg.kubernetes.kubeconfig, in_cluster_fallback=True))
            except NixdriftError as exc:
                log.warning("kube: cannot publish the cluster's reports: %s", exc)
                return
            for obj in cluster_objects(report, cfg.report_format, default_namespace=cfg.kubernetes.namespace):
                try:
                    apply(publisher[0], obj, 10.0)
                except Exception as exc:  # noqa: BLE001 - the next run publishes again
                    log.warning("kube: cannot publish %s/%s: %s", obj["kind"], obj["metadata"]["namespace"], exc)

    scheduler.on_report = publish
    scheduler.start()
    return scheduler
