"""What is drifting now: reconcile a capture's findings with the recorded ones.

A finding's state change, its history event and its alert are one transaction; alerts are then
delivered from that record (an outbox), so a crash neither loses nor repeats one. The same id
appearing more than `REPEAT_LIMIT` times in 24 h escalates one level and says why; findings that
disappear from a category that was captured are resolved; accepted findings stay visible but
quiet until their actual value changes.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from nixdrift.models import Category, Finding, Section, Severity, Source
from nixdrift.pipeline import now_iso
from nixdrift.service.history import Store
from nixdrift.sinks.journald import Alert, Event

log = logging.getLogger(__name__)

REPEAT_LIMIT = 3
COALESCE_OVER = 20  # alerts of one event below one directory, in one reconcile, before they become one
FIRST_PATHS = 5  # paths a coalesced alert names

Attributor = Callable[[Finding], str]


def escalate(f: Finding, why: str) -> Finding:
    before = f.severity
    after = before.escalated()
    evidence = {**f.evidence, "escalated": f"{before.label} -> {after.label}: {why}"}
    return f.with_(severity=after, message=f"{f.message} (escalated from {before.label}: {why})", evidence=evidence)


def coalesce(alerts: list[Alert], limit: int = COALESCE_OVER) -> list[Alert]:
    """A burst is one alert per directory and event: more than `limit` alerts of one event below one
    directory become a single alert naming the count and the first paths (history keeps each)."""
    groups: dict[tuple[Event, str], list[Alert]] = {}
    for a in alerts:
        if a.finding is not None and a.event in (Event.NEW, Event.RESOLVED) and a.finding.path:
            groups.setdefault((a.event, posixpath.dirname(a.finding.path)), []).append(a)
    out: list[Alert] = []
    said: set[tuple[Event, str]] = set()
    for a in alerts:
        key = (a.event, posixpath.dirname(a.finding.path)) if a.finding is not None and a.finding.path else None
        group = groups.get(key) if key is not None else None
        if key is None or group is None or len(group) <= limit:
            out.append(a)
            continue
        if key in said:
            continue
        said.add(key)
        event, directory = key
        paths = sorted(g.finding.path for g in group if g.finding is not None)
        first = ", ".join(paths[:FIRST_PATHS])
        categories = sorted({g.finding.category.value for g in group if g.finding is not None})
        what = "new findings" if event is Event.NEW else "findings resolved"
        out.append(
            Alert(
                event,
                f"{event.value}: {len(group)} {what} below {directory} ({', '.join(categories)}): {first}, ...",
                max(g.severity for g in group),
                extra={
                    "NIXDRIFT_COUNT": str(len(group)),
                    "NIXDRIFT_PATH": directory,
                    "NIXDRIFT_CATEGORY": ",".join(categories),
                    "NIXDRIFT_PATHS": "\n".join(paths[:FIRST_PATHS]),
                },
            )
        )
    return out


def _basis(f: Finding, accepted: bool) -> int:
    """A digest of a comparator's finding: equal digests mean nothing an operator sees changed."""
    return hash(
        (f.actual, f.expected, f.message, f.severity, f.kind, f.subject, accepted, repr(f.fix), repr(f.evidence))
    )


@dataclass(frozen=True, slots=True)
class Scoped:
    """A category captured at a few paths only, and which of its recorded findings that decides."""

    prefixes: tuple[str, ...]  # every id it decides starts with one of these: a sieve in C, not Python
    owns: Callable[[Finding], bool]


@dataclass(slots=True)
class Outcome:
    alerts: list[Alert] = field(default_factory=list)
    new: list[Finding] = field(default_factory=list)
    resolved: list[Finding] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.new or self.resolved or self.alerts)


class Tracker:
    def __init__(self, store: Store, threshold: Severity, *, kube: bool = False) -> None:
        self.store = store
        self.threshold = threshold
        self.kube = kube  # which family this tracker keeps (one database holds a host's and a cluster's)
        self.active: dict[str, Finding] = self._mine(store.active())
        self.status: dict[Category, str] = {}
        self.problems: dict[Category, tuple[str, ...]] = {}
        self._failed: set[Category] = set()
        self._basis: dict[str, int] = {}  # id -> digest of what the comparator last said (skip if same)
        self.seen_at: dict[Category, str] = {}  # when each category's unchanged findings were last seen
        # what other threads read (STATUS): replaced whole, never mutated, so never read mid-update
        self.counts: Mapping[str, int] = self._count()

    def reload(self) -> None:
        """Back to what the database holds (after a write failed part-way)."""
        self.active = self._mine(self.store.active())
        self._basis.clear()
        self.counts = self._count()

    def _mine(self, findings: dict[str, Finding]) -> dict[str, Finding]:
        return {i: f for i, f in findings.items() if f.category.is_kube is self.kube}

    def reconcile(
        self,
        sections: Mapping[Category, Section[Any]],
        findings: Iterable[Finding],
        *,
        source: Source = Source.SCAN,
        attribute: Attributor | None = None,
        scoped: Mapping[Category, Scoped] | None = None,
    ) -> Outcome:
        """Record what changed and queue its alerts in ONE transaction (findings, history events and
        the alert outbox commit together or not at all); memory follows only once it committed.
        The caller delivers the queued alerts (`Store.undelivered`).

        A category in `scoped` was captured at a few paths only: its findings that the predicate
        owns are replaced by these, the others are left as they are (neither seen nor resolved)."""
        out = Outcome()
        scoped = scoped or {}
        captured = {c for c, s in sections.items() if s.unavailable is None}

        def mine(f: Finding) -> bool:
            return f.category in captured and (f.category not in scoped or scoped[f.category].owns(f))

        current = {f.id: f for f in findings if mine(f)}
        accepted = self.store.accepted()
        whole = captured - set(scoped)
        previous = {i: f for i, f in self.active.items() if f.category in whole} if whole else {}
        for c, part in scoped.items():  # an edit among 15,000 known findings: sieve by id first
            if c in captured:
                sieved = (f for i, f in self.active.items() if i.startswith(part.prefixes))
                previous.update((f.id, f) for f in sieved if f.category is c and part.owns(f))
        stamp = now_iso()
        # attribution asks the journal: before the transaction, which holds the database lock
        fresh_new: dict[str, Finding] = {}
        for fid in sorted(set(current) - set(previous)):
            baseline = accepted.get(fid)
            f = current[fid].with_(source=source, accepted=baseline is not None and baseline[0] == current[fid].actual)
            if attribute is not None and f.source is Source.REALTIME:
                f = f.with_(evidence={**f.evidence, "attribution": attribute(f)})
            fresh_new[fid] = f
        changed: dict[str, Finding] = {}
        bases: dict[str, int] = {}
        events: list[tuple[str, Finding | None, str, str]] = []
        with self.store.tx():
            failures = self._note_failures(sections, out)
            for fid, fresh in sorted(current.items()):
                baseline = accepted.get(fid)
                is_accepted = baseline is not None and baseline[0] == fresh.actual
                old = previous.get(fid)
                if old is None:
                    f = self._appear(fresh_new[fid])
                    bases[fid] = _basis(fresh, f.accepted)
                    out.new.append(f)
                    changed[fid] = f
                    events.append(("new", f, "", f.actual))
                    if not f.accepted and f.severity >= self.threshold:
                        out.alerts.append(Alert.of(Event.NEW, f))
                    continue
                basis = _basis(fresh, is_accepted)
                if self._basis.get(fid) == basis:
                    continue  # the comparator said the same as last time: only last seen moves (below)
                f = self._carry(old, fresh, stamp, is_accepted)
                bases[fid] = basis
                if f.with_(last_seen=old.last_seen) == old:
                    continue
                changed[fid] = f
                if old.accepted and not f.accepted and baseline is not None:
                    events.append(("new", f, "", f"changed since accepted ({baseline[0]!r} -> {f.actual!r})"))
                    if f.severity >= self.threshold:
                        out.alerts.append(Alert.of(Event.NEW, f, "changed since it was accepted"))
                elif f.severity > old.severity and not f.accepted:
                    events.append(("escalated", f, "", f"{old.severity.label} -> {f.severity.label}"))
                    if f.severity >= self.threshold:
                        out.alerts.append(Alert.of(Event.ESCALATED, f, f"was {old.severity.label}"))
                elif f.actual != old.actual:
                    events.append(("changed", f, "", f"{old.actual!r} -> {f.actual!r}"))
                    if not f.accepted and f.severity >= self.threshold:
                        out.alerts.append(Alert.of(Event.NEW, f, f"changed again, was {old.actual!r}"))
            gone = [previous[i] for i in sorted(set(previous) - set(current))]
            for f in gone:
                out.resolved.append(f)
                events.append(("resolved", f, "", ""))
                if not f.accepted and f.severity >= self.threshold:
                    out.alerts.append(Alert.of(Event.RESOLVED, f))
            self.store.touch((c.value for c in captured if c not in scoped), stamp)
            self.store.seen([f for fid, f in changed.items() if fid in previous])
            self.store.resolve(f.id for f in gone)
            self.store.events(events)
            out.alerts = coalesce(out.alerts)
            self.store.queue_alerts(json.dumps(a.to_json(), sort_keys=True) for a in out.alerts)
        # committed: now memory may follow
        self._failed = failures
        self.active.update(changed)
        self._basis.update(bases)
        for f in gone:
            del self.active[f.id]
            self._basis.pop(f.id, None)
        for c in captured - set(scoped):
            self.seen_at[c] = stamp
        self._update_status(sections, frozenset(scoped))
        self.counts = self._count()
        return out

    def _appear(self, f: Finding) -> Finding:
        """Inside the caller's transaction: record the appearance, escalate repeated drift."""
        stored, recent = self.store.appear(f)
        if recent <= REPEAT_LIMIT:
            return stored
        out = escalate(stored, f"appeared {recent} times in 24 h")
        self.store.seen([out])
        return out

    def _carry(self, old: Finding, fresh: Finding, stamp: str, is_accepted: bool) -> Finding:
        f = fresh.with_(
            first_seen=old.first_seen,
            last_seen=stamp,
            count=old.count,
            source=old.source,
            accepted=is_accepted,
        )
        if "escalated" in old.evidence and "escalated" not in f.evidence:
            f = f.with_(severity=fresh.severity.escalated(), message=old.message)
            f = f.with_(evidence={**f.evidence, "escalated": old.evidence["escalated"]})
        if "attribution" in old.evidence:
            f = f.with_(evidence={**f.evidence, "attribution": old.evidence["attribution"]})
        return f

    def _note_failures(self, sections: Mapping[Category, Section[Any]], out: Outcome) -> set[Category]:
        """Record and alert categories whose capture failed (once until they succeed); returns the
        failed set to keep once the transaction committed."""
        failing = set(self._failed)
        for category, section in sorted(sections.items(), key=lambda kv: kv[0].value):
            failed = section.unavailable is not None and section.unavailable.startswith("capture failed")
            if failed and category not in failing:
                failing.add(category)
                text = f"scan of {category.value} failed: {section.unavailable}"
                self.store.events([("scan-failed", None, "", text)])
                out.alerts.append(
                    Alert(Event.SCAN_FAILED, text, Severity.MEDIUM, extra={"NIXDRIFT_CATEGORY": category.value})
                )
            elif not failed:
                failing.discard(category)
        return failing

    def _update_status(
        self, sections: Mapping[Category, Section[Any]], scoped: frozenset[Category] = frozenset()
    ) -> None:
        wanted, drifted = set(sections), set()
        for f in self.active.values():  # stops at the first drift of each category it is asked about
            if f.category in wanted and not f.accepted:
                drifted.add(f.category)
                wanted.discard(f.category)
                if not wanted:
                    break
        for category, section in sections.items():
            if section.unavailable is not None:
                self.status[category] = f"unavailable: {section.unavailable}"
            elif category in scoped and self.status.get(category, "").startswith("unavailable"):
                pass  # a few paths read do not make a category that could not be read whole "ok"
            else:
                self.status[category] = "drift" if category in drifted else "ok"
            if category in scoped:  # the whole capture's problems stand until the next one
                self.problems[category] = tuple(dict.fromkeys((*self.problems.get(category, ()), *section.problems)))
            else:
                self.problems[category] = section.problems

    def accepted_changed(self) -> list[Finding]:
        """Apply acceptances made by `nixdrift accept` since the last look (no alert, no capture)."""
        accepted = self.store.accepted()
        changed: list[Finding] = []
        for fid, f in list(self.active.items()):
            now = fid in accepted and accepted[fid][0] == f.actual
            if now != f.accepted:
                self.active[fid] = f.with_(accepted=now)
                changed.append(self.active[fid])
        if changed:
            self.store.seen(changed)
            self.counts = self._count()
        return changed

    def _count(self) -> Mapping[str, int]:
        """Active, unaccepted findings by severity; only the worker thread calls it."""
        by_severity = Counter(f.severity for f in self.active.values() if not f.accepted)
        return MappingProxyType({s.label: by_severity[s] for s in sorted(Severity, reverse=True)})

    def current(self) -> list[Finding]:
        """The active findings with their true last seen (unchanged ones are not rewritten per scan)."""
        out = []
        for f in self.active.values():
            seen = self.seen_at.get(f.category)
            out.append(f.with_(last_seen=seen) if seen is not None and seen > f.last_seen else f)
        return out

    def summary(self) -> dict[str, int]:
        """Safe from any thread: a copy of the last published counts."""
        return dict(self.counts)
