"""What is drifting now: reconcile a capture's findings with the recorded ones.

A finding's state change, its history event and its alert are one transaction; alerts are then
delivered from that record (an outbox), so a crash neither loses nor repeats one. The same id
appearing more than `REPEAT_LIMIT` times in 24 h escalates one level and says why; findings that
disappear from a category that was captured are resolved; accepted findings stay visible but
quiet until their actual value changes.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from nixdrift.models import Category, Finding, Section, Severity, Source
from nixdrift.pipeline import now_iso
from nixdrift.service import history
from nixdrift.service.history import Store, finding_of, id_of
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


def coalesce(alerts: Iterable[Alert], limit: int = COALESCE_OVER) -> list[Alert]:
    """A burst is one alert per directory and event: more than `limit` alerts of one event below one
    directory become a single alert naming the count and the first paths (history keeps each)."""
    c = Coalescer(limit)
    for a in alerts:
        c.add(a)
    return c.alerts()


@dataclass(slots=True)
class _Burst:
    at: int  # position of its first alert
    members: list[tuple[int, Alert]]  # kept while there are at most `limit`
    count: int = 0
    first: list[str] = field(default_factory=list)  # the FIRST_PATHS smallest paths
    categories: set[str] = field(default_factory=set)
    worst: Severity = Severity.INFO


class Coalescer:
    """`coalesce`, one alert at a time: it holds at most `limit` alerts of a directory, then only
    their count, first paths, categories and worst severity, so a storm of 100,000 findings is never
    100,000 alerts in memory. Alerts come out in the order they went in; a burst at its first."""

    def __init__(self, limit: int = COALESCE_OVER) -> None:
        self.limit = limit
        self._n = 0
        self._single: list[tuple[int, Alert]] = []
        self._bursts: dict[tuple[Event, str], _Burst] = {}

    def add(self, a: Alert) -> None:
        self._n += 1
        if a.finding is None or a.event not in (Event.NEW, Event.RESOLVED) or not a.finding.path:
            self._single.append((self._n, a))
            return
        path = a.finding.path
        key = (a.event, posixpath.dirname(path))
        burst = self._bursts.get(key)
        if burst is None:
            burst = self._bursts[key] = _Burst(self._n, [])
        burst.count += 1
        if burst.count <= self.limit:
            burst.members.append((self._n, a))
        else:
            burst.members.clear()
        if len(burst.first) < FIRST_PATHS or path < burst.first[-1]:
            bisect.insort(burst.first, path)
            del burst.first[FIRST_PATHS:]
        burst.categories.add(a.finding.category.value)
        burst.worst = max(burst.worst, a.severity)

    def alerts(self) -> list[Alert]:
        out = list(self._single)
        for (event, directory), b in self._bursts.items():
            if b.count <= self.limit:
                out.extend(b.members)
                continue
            categories = sorted(b.categories)
            what = "new findings" if event is Event.NEW else "findings resolved"
            first = ", ".join(b.first)
            alert = Alert(
                event,
                f"{event.value}: {b.count} {what} below {directory} ({', '.join(categories)}): {first}, ...",
                b.worst,
                extra={
                    "NIXDRIFT_COUNT": str(b.count),
                    "NIXDRIFT_PATH": directory,
                    "NIXDRIFT_CATEGORY": ",".join(categories),
                    "NIXDRIFT_PATHS": "\n".join(b.first),
                },
            )
            out.append((b.at, alert))
        out.sort(key=lambda pa: pa[0])
        return [a for _at, a in out]


def _stamped(data: str, first: str, last: str, count: int) -> str | None:
    """A stored record's JSON (sorted keys) with its last seen replaced, when its first seen and
    count are the history's (as every write leaves them); None when they are not."""
    if f'"count": {count}, "evidence": ' not in data or f'"first_seen": {json.dumps(first)}, "fix": ' not in data:
        return None
    key = '"last_seen": "'
    at = data.rfind(key)
    end = data.find('", "message": ', at) if at >= 0 else -1
    if end < 0:
        return None
    return data[: at + len(key)] + last + data[end:]


def _restamped(data: str, first: str, last: str, count: int) -> str:
    record = json.loads(data)
    record["first_seen"], record["last_seen"], record["count"] = first, last, count
    return json.dumps(record, sort_keys=True)


def scan_failed(category: Category, section: Section[Any]) -> bool:
    """Whether a category could not be judged because the daemon's own work failed: its capture
    raised, or its comparator did (`pipeline.comparator_failed`). Either is a "scan failed" alert."""
    why = section.unavailable or ""
    return why.startswith("capture failed") or why.startswith(f"{category.value} comparator failed:")


def _basis(f: Finding, accepted: bool) -> int:
    """A digest of a comparator's finding, the same in every process (it is kept with the record):
    equal digests mean nothing an operator sees changed."""
    said = (f.actual, f.expected, f.message, f.severity.value, f.kind.value, f.subject, accepted, f.fix)
    text = repr((*said, sorted(f.evidence.items())))
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True, slots=True)
class Scoped:
    """A category captured at a few paths only, and which of its recorded findings that decides."""

    prefixes: tuple[str, ...]  # every id it decides starts with one of these: a sieve in C, not Python
    owns: Callable[[Finding], bool]


OUTCOME_KEEP = 100  # findings an Outcome lists of each kind (its counts are exact)

Key = tuple[Category, Severity, bool]  # what the counts, STATUS and the report's summary need


def _key(f: Finding) -> Key:
    return (f.category, f.severity, f.accepted)


@dataclass(slots=True)
class Outcome:
    alerts: list[Alert] = field(default_factory=list)
    new: list[Finding] = field(default_factory=list)  # the first OUTCOME_KEEP
    resolved: list[Finding] = field(default_factory=list)  # the first OUTCOME_KEEP
    new_count: int = 0
    resolved_count: int = 0

    def add_new(self, f: Finding) -> None:
        self.new_count += 1
        if len(self.new) < OUTCOME_KEEP:
            self.new.append(f)

    def add_resolved(self, f: Finding) -> None:
        self.resolved_count += 1
        if len(self.resolved) < OUTCOME_KEEP:
            self.resolved.append(f)

    @property
    def changed(self) -> bool:
        return bool(self.new_count or self.resolved_count or self.alerts)


class Active(Mapping[str, Finding]):
    """The active findings, read from the database when asked: the tracker keeps none of them in
    memory (nor their ids), so 100,000 of them cost it nothing between two reconciles."""

    def __init__(self, tracker: Tracker) -> None:
        self._t = tracker

    def __getitem__(self, fid: str) -> Finding:
        got = self._t.store.active_by_id([fid]).get(fid)
        if got is None or got.category not in self._t.family:
            raise KeyError(fid)
        return got

    def __contains__(self, fid: object) -> bool:
        row = self._t.store.active_rows([fid]).get(fid) if isinstance(fid, str) else None
        return row is not None and Category(row[6]) in self._t.family

    def __iter__(self) -> Iterator[str]:
        for page in self._t.store.active_ids(c.value for c in self._t.family):
            yield from page

    def __len__(self) -> int:
        return sum(self._t._tally.values())


@dataclass(slots=True)
class _Writes:
    """One page of a reconcile's writes, flushed inside its transaction."""

    seen: list[Finding] = field(default_factory=list)
    bases: dict[str, int] = field(default_factory=dict)  # of `seen`, and of records left as they were
    resolve: list[str] = field(default_factory=list)
    events: list[tuple[str, Finding | None, str, str]] = field(default_factory=list)

    def flush(self, store: Store) -> None:
        store.seen(self.seen, self.bases)
        written = {f.id for f in self.seen}
        store.set_bases((i, b) for i, b in self.bases.items() if i not in written)
        store.resolve(self.resolve)
        store.events(self.events)
        self.seen.clear()
        self.bases.clear()
        self.resolve.clear()
        self.events.clear()


class Tracker:
    def __init__(self, store: Store, threshold: Severity, *, kube: bool = False) -> None:
        self.store = store
        self.threshold = threshold
        self.kube = kube  # which family this tracker keeps (one database holds a host's and a cluster's)
        self.family = frozenset(c for c in Category if c.is_kube is kube)
        # what memory holds of the active findings (the database has them, each with the digest of
        # what its comparator last said): their counts by (category, severity, accepted), and which
        # are accepted. Nothing per finding but the accepted ones.
        self._tally: Counter[Key] = Counter()
        self._accepted: set[str] = set()
        self._load()
        self.active: Mapping[str, Finding] = Active(self)
        self.status: dict[Category, str] = {}
        self.problems: dict[Category, tuple[str, ...]] = {}
        self._failed: set[Category] = set()
        self.seen_at: dict[Category, str] = {}  # when each category's unchanged findings were last seen
        # what other threads read (STATUS): replaced whole, never mutated, so never read mid-update
        self.counts: Mapping[str, int] = self._count()

    def _load(self) -> None:
        tally: Counter[Key] = Counter()
        accepted: set[str] = set()
        for fid, category, severity, is_accepted in self.store.active_keys(c.value for c in self.family):
            tally[(Category(category), Severity.parse(severity), is_accepted)] += 1
            if is_accepted:
                accepted.add(fid)
        self._tally, self._accepted = tally, accepted

    def reload(self) -> None:
        """Back to what the database holds (after a write failed part-way)."""
        self._load()
        self.counts = self._count()

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

        `findings` is read once, a page at a time, inside the transaction: each page is looked up
        among the recorded findings, compared (by the digest of what the comparator said, kept with
        each record) and written before the next is read; the recorded findings of a category
        captured whole that the capture did not find are then resolved, a page at a time. So a
        storm's 100,000 findings need never be in memory at once: the caller may pass a generator
        (an exception from it rolls the whole reconcile back). Attribution (a journal query per new
        finding, as the caller's `attribute` budgets) runs inside the transaction.

        A category in `scoped` was captured at a few paths only: its findings that the predicate
        owns are replaced by these, the others are left as they are (neither seen nor resolved)."""
        out = Outcome()
        scoped = scoped or {}
        captured = {c for c, s in sections.items() if s.unavailable is None}
        whole = frozenset(captured - set(scoped))
        whole_names = sorted(c.value for c in whole)
        few: set[str] = set()  # ids of the scoped categories' recorded findings these paths decide
        for c, part in scoped.items():
            if c in captured:
                for rows in self.store.active_below(c.value, part.prefixes):
                    few.update(id_of(r) for r in rows if part.owns(finding_of(r)))
        accepted = self.store.accepted()
        stamp = now_iso()
        coalescer = Coalescer()
        gone: list[str] = []
        plus: Counter[Key] = Counter()
        minus: Counter[Key] = Counter()
        accepting: dict[str, bool] = {}  # id -> accepted, for those recorded whose flag may have changed
        writes = _Writes()
        met: set[str] = set()  # ids the capture found (of the categories captured whole, and scoped)

        def compare(fid: str, fresh: Finding, row: Any) -> None:
            """A recorded finding (its row: parsed only when needed) the capture found again: write
            it only if what it says changed."""
            baseline = accepted.get(fid)
            is_accepted = baseline is not None and baseline[0] == fresh.actual
            basis = _basis(fresh, is_accepted)
            if row[5] == basis:
                return  # the comparator said the same as last time: only last seen moves (touch)
            old = finding_of(row)
            f = self._carry(old, fresh, stamp, is_accepted)
            writes.bases[fid] = basis
            if f.with_(last_seen=old.last_seen) == old:
                return
            writes.seen.append(f)
            if f.accepted != old.accepted:
                accepting[fid] = f.accepted
            minus[_key(old)] += 1
            plus[_key(f)] += 1
            if old.accepted and not f.accepted and baseline is not None:
                writes.events.append(("new", f, "", f"changed since accepted ({baseline[0]!r} -> {f.actual!r})"))
                if f.severity >= self.threshold:
                    coalescer.add(Alert.of(Event.NEW, f, "changed since it was accepted"))
            elif f.severity > old.severity and not f.accepted:
                writes.events.append(("escalated", f, "", f"{old.severity.label} -> {f.severity.label}"))
                if f.severity >= self.threshold:
                    coalescer.add(Alert.of(Event.ESCALATED, f, f"was {old.severity.label}"))
            elif f.actual != old.actual:
                writes.events.append(("changed", f, "", f"{old.actual!r} -> {f.actual!r}"))
                if not f.accepted and f.severity >= self.threshold:
                    coalescer.add(Alert.of(Event.NEW, f, f"changed again, was {old.actual!r}"))

        def appear(news: list[tuple[str, Finding]]) -> None:
            """Findings the capture found that are not recorded (as active): a page at a time."""
            if not news:
                return
            prepared: list[tuple[Finding, int | None]] = []
            for fid, fresh in news:
                baseline = accepted.get(fid)
                f = fresh.with_(source=source, accepted=baseline is not None and baseline[0] == fresh.actual)
                if attribute is not None and source is Source.REALTIME:
                    f = f.with_(evidence={**f.evidence, "attribution": attribute(fresh)})
                prepared.append((f, _basis(fresh, f.accepted)))
            for (fid, _fresh), f in zip(news, self._appear_many(prepared), strict=True):
                out.add_new(f)
                if f.accepted or fid in self._accepted:
                    accepting[fid] = f.accepted
                plus[_key(f)] += 1
                writes.events.append(("new", f, "", f.actual))
                if not f.accepted and f.severity >= self.threshold:
                    coalescer.add(Alert.of(Event.NEW, f))

        def resolve(f: Finding) -> None:
            out.add_resolved(f)
            gone.append(f.id)
            minus[_key(f)] += 1
            writes.resolve.append(f.id)
            writes.events.append(("resolved", f, "", ""))
            if not f.accepted and f.severity >= self.threshold:
                coalescer.add(Alert.of(Event.RESOLVED, f))

        def mine(f: Finding) -> bool:
            return f.category in whole or (f.category in captured and scoped[f.category].owns(f))

        with self.store.tx():
            failures, failed_alerts = self._note_failures(sections)
            for a in failed_alerts:
                coalescer.add(a)
            page: dict[str, Finding] = {}
            for f in itertools.chain(findings, [None]):
                if f is not None:
                    if f.id not in met and mine(f):
                        page[f.id] = f  # the same id twice in one capture: the last one says it
                    if len(page) < history.PAGE:
                        continue
                recorded = self.store.active_rows(i for i, g in page.items() if g.category in whole or i in few)
                news: list[tuple[str, Finding]] = []
                for fid, fresh in sorted(page.items()):
                    row = recorded.get(fid) if fresh.category in whole or fid in few else None
                    if row is None:
                        news.append((fid, fresh))
                    else:
                        compare(fid, fresh, row)
                appear(news)
                met.update(page)
                page.clear()
                writes.flush(self.store)
            for ids in self.store.active_ids(whole_names):  # recorded, not found: resolved
                left = [i for i in ids if i not in met]
                for f in self.store.active_by_id(left).values():
                    resolve(f)
                writes.flush(self.store)
            left = sorted(few - met)
            for start in range(0, len(left), history.PAGE):
                for f in self.store.active_by_id(left[start : start + history.PAGE]).values():
                    resolve(f)
                writes.flush(self.store)
            self.store.touch(whole_names, stamp)
            out.alerts = coalescer.alerts()
            self.store.queue_alerts(json.dumps(a.to_json(), sort_keys=True) for a in out.alerts)
        # committed: now memory may follow
        self._failed = failures
        for fid in gone:
            self._accepted.discard(fid)
        for fid, is_accepted in accepting.items():
            if is_accepted:
                self._accepted.add(fid)
            else:
                self._accepted.discard(fid)
        self._tally.update(plus)
        self._tally.subtract(minus)
        self._tally = +self._tally
        for c in whole:
            self.seen_at[c] = stamp
        self._update_status(sections, frozenset(scoped))
        self.counts = self._count()
        return out

    def _appear_many(self, items: list[tuple[Finding, int | None]]) -> list[Finding]:
        """Inside the caller's transaction: record the appearances, escalate repeated drift."""
        out: list[Finding] = []
        for (stored, recent), (_f, basis) in zip(self.store.appear_many(items), items, strict=True):
            if recent <= REPEAT_LIMIT:
                out.append(stored)
                continue
            escalated = escalate(stored, f"appeared {recent} times in 24 h")
            self.store.seen([escalated], {escalated.id: basis} if basis is not None else None)
            out.append(escalated)
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

    def _note_failures(self, sections: Mapping[Category, Section[Any]]) -> tuple[set[Category], list[Alert]]:
        """Record and alert categories whose capture failed (once until they succeed); returns the
        failed set to keep once the transaction committed, and the alerts to queue."""
        failing = set(self._failed)
        alerts: list[Alert] = []
        for category, section in sorted(sections.items(), key=lambda kv: kv[0].value):
            failed = scan_failed(category, section)
            if failed and category not in failing:
                failing.add(category)
                text = f"scan of {category.value} failed: {section.unavailable}"
                self.store.events([("scan-failed", None, "", text)])
                alerts.append(
                    Alert(Event.SCAN_FAILED, text, Severity.MEDIUM, extra={"NIXDRIFT_CATEGORY": category.value})
                )
            elif not failed:
                failing.discard(category)
        return failing, alerts

    def _update_status(
        self, sections: Mapping[Category, Section[Any]], scoped: frozenset[Category] = frozenset()
    ) -> None:
        drifted = {c for (c, _s, accepted), n in self._tally.items() if n > 0 and not accepted}
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
        """Apply acceptances made by `nixdrift accept` since the last look (no alert, no capture):
        only the accepted ones and those recorded as accepted are read."""
        accepted = self.store.accepted()
        candidates = set(accepted) | self._accepted
        changed: list[Finding] = []
        for fid, f in sorted(self.store.active_by_id(candidates).items()):
            now = fid in accepted and accepted[fid][0] == f.actual
            if f.category in self.family and now != f.accepted:
                changed.append(f.with_(accepted=now))
        if changed:
            self.store.seen(changed)
            for f in changed:
                self._tally[(f.category, f.severity, not f.accepted)] -= 1
                self._tally[_key(f)] += 1
                if f.accepted:
                    self._accepted.add(f.id)
                else:
                    self._accepted.discard(f.id)
            self._tally = +self._tally
            self.counts = self._count()
        return changed

    def _count(self) -> Mapping[str, int]:
        """Active, unaccepted findings by severity; only the worker thread calls it."""
        by_severity: Counter[Severity] = Counter()
        for (_c, severity, accepted), n in self._tally.items():
            if not accepted:
                by_severity[severity] += n
        return MappingProxyType({s.label: by_severity[s] for s in sorted(Severity, reverse=True)})

    def tally(self) -> dict[Key, int]:
        """Active findings by (category, severity, accepted): what a report's counts need."""
        return dict(self._tally)

    def findings(self) -> Iterator[Finding]:
        """The active findings as recorded, by id, read a page at a time."""
        for page in self.store.active_pages(c.value for c in self.family):
            for _fid, row in page:
                yield finding_of(row)

    def iter_current(self) -> Iterator[Finding]:
        """The active findings most severe first, then by id (the report's order), with their true
        last seen (unchanged ones are not rewritten per scan), read a page at a time."""
        for f in self.store.active_sorted(c.value for c in self.family):
            seen = self.seen_at.get(f.category)
            yield f.with_(last_seen=seen) if seen is not None and seen > f.last_seen else f

    def iter_current_json(self) -> Iterator[str]:
        """`iter_current`, each finding as `json.dumps(f.to_json(), sort_keys=True)`: its stored
        record with its history's last seen put in, never parsed into a Finding (the report of
        15,000 findings is rewritten in a fraction of the time)."""
        for r in self.store.active_sorted((c.value for c in self.family), parse=False):
            seen = self.seen_at.get(Category(r[6]))
            last = str(r[3])
            last = seen if seen is not None and seen > last else last
            yield _stamped(r[1], str(r[2]), last, int(r[4])) or _restamped(r[1], str(r[2]), last, int(r[4]))

    def current(self) -> list[Finding]:
        """`iter_current`, whole (a cluster's findings: a few)."""
        return list(self.iter_current())

    def summary(self) -> dict[str, int]:
        """Safe from any thread: a copy of the last published counts."""
        return dict(self.counts)
