"""Issue 9: memory bounded by design in a storm, not by luck.

The tracker keeps of each active finding its id and a digest (the database has the rest); a
reconcile of a whole capture reads, compares and writes a page at a time within its one
transaction; the published report is written from the database one finding at a time. Measured
with tracemalloc in-process (SQLite's own cache is not Python's and is bounded by its settings),
per finding, at a few thousand findings: a design that holds a Finding (about 1.4 KiB) per active
finding, or every finding of a storm at once while recording it, is far above these bounds.
"""

from __future__ import annotations

import gc
import io
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nixdrift.models import Category, Finding, Fix, FlakeInfo, Generations, Kind, Report, Section, Severity
from nixdrift.service import history
from nixdrift.service.history import Store
from nixdrift.service.tracker import Tracker

N = 6000  # more than the pages (2,000) and the findings an Outcome lists (1,000)
ETC = {Category.ETC: Section(Category.ETC, data=object())}
HELD_PER_FINDING = 400  # bytes the tracker may keep per active finding (a Finding is ~1,400)
PUBLISH_PER_FINDING = 300  # bytes while publishing (a report of Findings and its text: ~1,600)
MARGINAL_PER_FINDING = 250  # bytes a streamed capture's peak grows by per finding (its id, in a set)
PEAK_PER_FINDING = 450  # bytes above the capture's own findings while recording or resolving them


def storm(n: int) -> list[Finding]:
    """What the etc comparator says of a storm's new files (the same shape and sizes)."""
    out = []
    for i in range(n):
        path = f"/etc/storm/f{i:06d}"
        out.append(
            Finding(
                id=f"etc/storm/f{i:06d}",
                category=Category.ETC,
                subject=path,
                kind=Kind.UNMANAGED,
                expected="absent",
                actual="file 0644 root:root sha256:" + f"{i:064x}",
                message=f"{path} is a regular file the flake does not declare",
                fix=Fix(nix=f'environment.etc."storm/f{i:06d}".text = "...";', command=f"rm -f {path}", safe=False),
                severity=Severity.MEDIUM,
                evidence={"path": path, "mode": "0644", "owner": "root:root"},
            )
        )
    return out


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(history, "PAGE", 500, raising=False)  # a reader holds a page: smaller than N, so N shows
    gc.collect()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def peak_of(step: Callable[[], object]) -> tuple[int, int]:
    """(bytes held after `step` beyond before it, peak bytes above before during it)."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    result = step()
    del result
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    return after - before, peak - before


def test_the_tracker_keeps_a_digest_per_active_finding_not_the_finding(tmp_path: Path, traced: None) -> None:
    store = Store.open(tmp_path)
    tracker = Tracker(store, Severity.LOW)
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    findings = storm(N)
    capture = tracemalloc.get_traced_memory()[0] - start  # what the capture's findings take
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    tracker.reconcile(ETC, findings)
    peak = tracemalloc.get_traced_memory()[1] - before
    del findings  # the capture is let go: what stays is the tracker's
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before + capture
    assert len(tracker.active) == N and tracker.summary()["medium"] == N
    assert tracker.active["etc/storm/f000007"].actual.endswith(f"{7:064x}")  # the database has them whole
    assert held / N < HELD_PER_FINDING, f"{held / N:.0f} bytes per active finding"
    assert peak / N < PEAK_PER_FINDING, f"{peak / N:.0f} bytes per finding at the peak of recording"
    store.close()


def test_a_whole_capture_is_recorded_without_holding_its_findings(tmp_path: Path, traced: None) -> None:
    """The worker hands the etc comparator's findings over as a generator: the tracker reads,
    compares and writes them a page at a time, so what a bigger storm adds to its peak is only each
    finding's id (while it decides what is gone), not the finding (~1,100 bytes as the comparator
    makes it): the peak of 3,000 and of 9,000 findings differ by little per extra finding."""
    made = storm(1)[0]

    def capture(n: int) -> Iterator[Finding]:  # the comparator's findings, made as they are read
        for i in range(n):
            path = f"/etc/storm/f{i:06d}"
            yield made.with_(id=path[1:], subject=path, evidence={**made.evidence, "path": path})

    peaks = []
    for n in (3000, 9000):
        store = Store.open(tmp_path / str(n))
        tracker = Tracker(store, Severity.LOW)
        _held, first = peak_of(lambda: tracker.reconcile(ETC, capture(n)))  # noqa: B023 - called at once
        assert tracker.summary()["medium"] == n
        assert store.conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'new'").fetchone()[0] == n
        # the same capture again: nothing changed, nothing written, and still a page at a time
        _held, again = peak_of(lambda: tracker.reconcile(ETC, capture(n)))  # noqa: B023
        assert store.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == n
        peaks.append((first, again))
        store.close()
    (first_small, again_small), (first_big, again_big) = peaks
    for what, small, big in (("recorded", first_small, first_big), ("seen again", again_small, again_big)):
        per = (big - small) / 6000
        assert per < MARGINAL_PER_FINDING, f"{per:.0f} bytes more at the peak per finding more ({what})"


def test_resolving_a_storm_reads_the_recorded_findings_a_page_at_a_time(tmp_path: Path, traced: None) -> None:
    store = Store.open(tmp_path)
    Tracker(store, Severity.LOW).reconcile(ETC, storm(N))
    tracker = Tracker(store, Severity.LOW)  # a restart: what it knows comes from the database
    _held, peak = peak_of(lambda: tracker.reconcile(ETC, []))  # the directory deleted
    assert len(tracker.active) == 0
    resolved = store.conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'resolved'").fetchone()[0]
    assert resolved == N
    bodies = [b for _seq, b in store.undelivered(1000) if '"resolved"' in b]
    assert len(bodies) == 1 and f'"NIXDRIFT_COUNT": "{N}"' in bodies[0]  # one coalesced alert
    assert peak / N < PEAK_PER_FINDING, f"{peak / N:.0f} bytes per finding at the peak of resolving"
    store.close()


def test_the_report_is_written_from_the_database_one_finding_at_a_time(tmp_path: Path, traced: None) -> None:
    from nixdrift.service.worker import report_text, write_report

    store = Store.open(tmp_path)
    tracker = Tracker(store, Severity.LOW)
    tracker.reconcile(ETC, storm(N))
    head = Report(
        host="h",
        generated_at="2026-01-01T00:00:00Z",
        flake=FlakeInfo("path:/x"),
        generations=Generations(None, None, None),
        categories={Category.ETC: "drift"},
        findings=(),
    )
    sink = io.StringIO()
    written = [0]

    def publish() -> None:
        written[0] = write_report(Devnull(sink), head, tracker.summary(), tracker.iter_current_json())

    _held, peak = peak_of(publish)
    assert written[0] == N
    assert peak / N < PUBLISH_PER_FINDING, f"{peak / N:.0f} bytes per finding at the peak of publishing"
    # and it is the very text of the whole report
    tracker.seen_at[Category.ETC] = "2099-01-01T00:00:00Z"  # unchanged findings seen since they were written
    whole = Report(**{**{k: getattr(head, k) for k in head.__slots__}, "findings": tuple(tracker.current())})
    assert {f.last_seen for f in whole.findings} == {"2099-01-01T00:00:00Z"}
    text = io.StringIO()
    write_report(text, head, tracker.summary(), tracker.iter_current_json())
    assert text.getvalue() == report_text(whole)
    store.close()


class Devnull(io.StringIO):
    """Counts what is written and keeps none of it (the report's file is on disk, not in memory)."""

    def __init__(self, _like: io.StringIO) -> None:
        super().__init__()
        self.chars = 0

    def write(self, s: str) -> int:
        self.chars += len(s)
        return len(s)
