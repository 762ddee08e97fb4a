"""Issue 9 (2): a finding's state, its history event and its alert are one transaction; alerts are
delivered from that record, so a SIGKILL at any point neither loses nor repeats one."""

from __future__ import annotations

import shutil
import signal
import sqlite3
from pathlib import Path

import pytest
from daemon_harness import Daemon, make_daemon, wait_for

pytestmark = [pytest.mark.nix, pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")]


def query(state: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"file:{state / 'history.db'}?mode=ro", uri=True, timeout=30)
    try:
        return list(db.execute(sql).fetchall())
    finally:
        db.close()


def kill9(d: Daemon) -> None:
    assert d.proc is not None
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    if d.notify is not None:
        d.notify.close()


BURST = "SELECT id FROM findings WHERE id LIKE 'etc/b/%' AND resolved_at IS NULL"
NEW_EVENTS = (
    "SELECT finding_id, COUNT(*) FROM events WHERE kind = 'new' AND finding_id LIKE 'etc/b/%' GROUP BY finding_id"
)


def test_kill_9_while_a_burst_is_recorded_leaves_every_finding_with_its_event(tmp_path: Path) -> None:
    d = make_daemon(tmp_path).start()
    d.wait_ready()
    burst = d.host.etc("b")
    burst.mkdir()
    for i in range(3000):
        (burst / f"f{i:04d}").write_text("x\n")
    # kill at the first moment any of the burst is in the database: mid-recording on a daemon that
    # commits finding by finding, just after the one transaction on one that does not
    wait_for(lambda: query(d.state, BURST), 60, "the first finding of the burst recorded")
    kill9(d)
    recorded = {str(r[0]) for r in query(d.state, BURST)}
    announced = dict(query(d.state, NEW_EVENTS))
    assert recorded == set(announced) and set(announced.values()) == {1}
    d.start()
    d.wait_ready()
    wait_for(lambda: len(query(d.state, BURST)) == 3000, 60, "every file of the burst recorded")
    announced = dict(query(d.state, NEW_EVENTS))
    assert len(announced) == 3000 and set(announced.values()) == {1}  # one "new" each, none lost or repeated
    d.stop()


def test_an_alert_recorded_but_not_delivered_is_delivered_after_a_kill(tmp_path: Path) -> None:
    d = make_daemon(tmp_path, NIXDRIFT_TEST_PAUSE_AT="record@2")
    d.start()
    d.wait_ready()
    d.host.etc("between.conf").write_text("x\n")
    marker = d.state / "paused-at-record"
    wait_for(marker.exists, 20, "the worker to stop between recording and delivery")
    assert query(d.state, "SELECT COUNT(*) FROM events WHERE kind = 'new' AND path = '/etc/between.conf'") == [(1,)]
    assert query(d.state, "SELECT COUNT(*) FROM alerts WHERE delivered_at IS NULL AND body LIKE '%between.conf%'") == [
        (1,)
    ]
    assert not [a for a in d.alerts() if a.path == "/etc/between.conf"]
    kill9(d)
    d.env.pop("NIXDRIFT_TEST_PAUSE_AT")
    d.start()
    d.wait_ready()
    d.wait_alert(event="new", path="/etc/between.conf")
    d.host.etc("barrier.conf").write_text("x\n")  # a later change: everything before it was sent
    d.wait_alert(event="new", path="/etc/barrier.conf")
    assert len([a for a in d.alerts() if a.path == "/etc/between.conf"]) == 1  # delivered once, not repeated
    assert query(d.state, "SELECT COUNT(*) FROM alerts WHERE delivered_at IS NULL") == [(0,)]
    assert query(d.state, "SELECT COUNT(*) FROM events WHERE kind = 'new' AND path = '/etc/between.conf'") == [(1,)]
    d.stop()
