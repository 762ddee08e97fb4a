"""The history store: restarts, repeated drift, acceptance, corruption."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from daemon_findings import finding

from nixdrift.models import Category, Section, Severity
from nixdrift.service.history import DB_NAME, Store
from nixdrift.service.tracker import Tracker
from nixdrift.sinks.journald import Event

ETC = {Category.ETC: Section(Category.ETC, data=object())}


def test_findings_survive_reopening(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    Tracker(store, Severity.LOW).reconcile(ETC, [finding()])
    store.close()
    again = Store.open(tmp_path)
    assert list(again.active()) == ["etc/motd"]
    assert again.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_drift_that_comes_back_more_than_three_times_a_day_escalates(tmp_path: Path) -> None:
    tracker = Tracker(Store.open(tmp_path), Severity.LOW)
    f = finding(severity=Severity.MEDIUM)
    for _ in range(3):
        out = tracker.reconcile(ETC, [f])
        assert out.new[0].severity == Severity.MEDIUM
        tracker.reconcile(ETC, [])
    out = tracker.reconcile(ETC, [f])
    fourth = out.new[0]
    assert fourth.severity == Severity.HIGH
    assert "appeared 4 times in 24 h" in fourth.message and "escalated" in fourth.evidence
    assert fourth.count == 4
    # stays escalated while it persists
    assert tracker.reconcile(ETC, [f]).alerts == [] and tracker.active["etc/motd"].severity == Severity.HIGH


def test_accepted_drift_is_quiet_visible_and_returns_when_it_changes(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    tracker = Tracker(store, Severity.LOW)
    tracker.reconcile(ETC, [finding()])
    store.accept([finding()], "known")
    tracker.accepted_changed()
    assert tracker.active["etc/motd"].accepted
    assert tracker.reconcile(ETC, [finding()]).alerts == []
    out = tracker.reconcile(ETC, [finding(actual="c")])
    assert [a.event for a in out.alerts] == [Event.NEW] and "accepted" in out.alerts[0].message
    assert not tracker.active["etc/motd"].accepted


def test_unavailable_category_resolves_nothing(tmp_path: Path) -> None:
    tracker = Tracker(Store.open(tmp_path), Severity.LOW)
    tracker.reconcile(ETC, [finding()])
    out = tracker.reconcile({Category.ETC: Section.missing(Category.ETC, "capture failed: boom")}, [])
    assert out.resolved == [] and [a.event for a in out.alerts] == [Event.SCAN_FAILED]
    assert "etc/motd" in tracker.active


def test_corrupt_database_is_moved_aside_and_a_fresh_one_started(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    store = Store.open(tmp_path)
    assert store.active() == {}
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(DB_NAME + ".corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not sqlite")
    assert sqlite3.connect(tmp_path / DB_NAME).execute("SELECT COUNT(*) FROM findings").fetchone() == (0,)


def test_fix_commands_keep_their_argv_when_run() -> None:
    from nixdrift.compare.common import sh
    from nixdrift.service.remediate import command_argv

    assert command_argv(sh("ln", "-sfn", "/etc/static/my motd", "/etc/my motd")) == [
        "ln", "-sfn", "/etc/static/my motd", "/etc/my motd",
    ]  # fmt: skip
    odd = sh("rm", "--", "/etc/new\nline\udcff")
    assert command_argv(odd) == ["bash", "-c", odd]
    compound = sh("rm", "--", "/run/x") + " && " + sh("systemctl", "daemon-reload")
    assert command_argv(compound) == ["bash", "-c", compound]


def test_commands_never_move_a_database_aside(tmp_path: Path) -> None:
    from nixdrift.errors import NixdriftError
    from nixdrift.service.history import DB_NAME, Store

    db = tmp_path / DB_NAME
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(NixdriftError, match="corrupt"):
        Store.open(tmp_path, repair=False)
    assert db.read_bytes().startswith(b"this is not a database")
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]


def test_a_fresh_report_shows_what_was_accepted_in_the_history(tmp_path: Path) -> None:
    from factories import make_report
    from nixdrift.commands.report import with_accepted

    kept, changed, other = finding(id="etc/a", actual="x"), finding(id="etc/b", actual="y"), finding(id="etc/c")
    store = Store.open(tmp_path)
    store.accept([kept, finding(id="etc/b", actual="old")], "baseline")
    store.close()
    report = with_accepted(make_report(kept, changed, other), tmp_path)
    assert {f.id: f.accepted for f in report.findings} == {"etc/a": True, "etc/b": False, "etc/c": False}
