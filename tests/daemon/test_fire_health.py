"""Issue 9 (3): health that tells the truth. What a restart cannot fix is said in STATUS, the
journal and the report; WATCHDOG stops only when the worker is stuck, so systemd restarts it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_harness import Daemon, NotifySocket, make_daemon, wait_for

from nixdrift.rootfs import Root
from nixdrift.service.routes import Tree
from nixdrift.service.watch import Batch, Debouncer, Watcher
from nixdrift.sinks.journald import Event

pytestmark = [pytest.mark.nix, pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")]


def status(d: Daemon) -> str:
    assert d.notify is not None
    states = d.notify.states("STATUS")
    return states[-1] if states else ""


def test_a_stuck_worker_stops_the_watchdog_and_says_so(tmp_path: Path) -> None:
    # job 1 is the start scan; job 2 (the first event) stops at its capture until the marker goes
    d = make_daemon(tmp_path, NIXDRIFT_TEST_PAUSE_AT="capture@2", NIXDRIFT_STUCK_AFTER="1.5").start(
        watchdog_usec=400_000
    )
    d.wait_ready()
    assert d.notify is not None
    d.host.etc("during.conf").write_text("x\n")
    marker = d.state / "paused-at-capture"
    wait_for(marker.exists, 15, "the worker to reach the pause")
    wait_for(lambda: "worker stuck" in status(d), 10, "STATUS to say the worker is stuck")
    pings = len(d.notify.states("WATCHDOG"))
    time.sleep(1.0)  # four keep-alive periods: none may come while the worker is stuck
    assert len(d.notify.states("WATCHDOG")) == pings
    marker.unlink()  # unstuck: keep-alives resume and the change is reported
    d.wait_alert(event="new", path="/etc/during.conf")
    wait_for(lambda: len(d.notify.states("WATCHDOG")) > pings, 5, "WATCHDOG=1 again")
    assert "stuck" not in status(d)
    d.stop()


def test_a_unit_directory_deleted_and_recreated_is_watched_again(tmp_path: Path) -> None:
    d = make_daemon(tmp_path).start(watchdog_usec=400_000)
    d.wait_ready()
    assert d.notify is not None
    units = d.host.root / "run/systemd/system"
    shutil.rmtree(units)
    wait_for(lambda: "not watching /run/systemd/system" in status(d), 10, "STATUS to name the vanished tree")
    assert "degraded" in status(d) and "inotify ok" not in status(d)
    pings = len(d.notify.states("WATCHDOG"))
    wait_for(lambda: len(d.notify.states("WATCHDOG")) >= pings + 3, 5, "WATCHDOG to go on (a restart cannot help)")
    units.mkdir()
    wait_for(lambda: "degraded" not in status(d), 10, "STATUS to be clear again")
    assert "not watching" not in status(d) and "inotify ok" in status(d)
    # the directory recreated is watched: a unit written into it now alerts within seconds
    (units / "late.service").write_text("[Service]\nExecStart=/bin/sleep 1000\n")
    d.wait_alert(event="new", id="late.service", timeout=10)
    d.stop()


def test_a_file_name_that_is_not_utf8_loses_nothing(tmp_path: Path) -> None:
    d = make_daemon(tmp_path).start()
    d.wait_ready()
    etc = os.fsencode(d.host.root / "etc")
    (d.host.root / "etc/sudoers.d").mkdir(exist_ok=True)
    with open(etc + b"/bad\xff.conf", "wb") as fh:  # in the same 120 ms as the next one
        fh.write(b"x\n")
    (d.host.root / "etc/sudoers.d/evil").write_text("mallory ALL=(ALL) NOPASSWD: ALL\n")
    d.wait_alert(event="new", path="/etc/sudoers.d/evil", timeout=10)
    db = sqlite3.connect(d.state / "history.db", timeout=30)
    paths = [r[0] for r in db.execute("SELECT path FROM events WHERE kind = 'event'")]
    db.close()
    assert b"/etc/bad\xff.conf" in paths  # stored byte for byte
    assert not [x for x in d.lines if "event sink failed" in x]
    d.stop()


def test_a_full_disk_under_the_state_directory_is_said_and_recovered(tmp_path: Path) -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a private tmpfs")
    journal = NotifySocket(tmp_path / "journal.sock")
    prom = tmp_path / "prom"
    prom.mkdir()
    d = make_daemon(tmp_path, f"alertThreshold: low\nprometheus:\n  textfileDir: {prom}\n")
    d.env["NIXDRIFT_JOURNAL_SOCKET"] = str(journal.path)
    d.state.mkdir()
    # the state directory is a 6 MiB tmpfs seen only by the daemon (its own mount namespace)
    mount = 'mount -t tmpfs -o size=6m nixdrift-state "$0" && exec "$@"'
    d.wrap = ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", mount, str(d.state)]
    d.start(watchdog_usec=400_000)
    try:
        d.wait_ready()
        assert d.proc is not None and d.notify is not None
        inside = Path(f"/proc/{d.proc.pid}/root") / str(d.state).lstrip("/")
        filler = inside / "filler"
        with filler.open("wb", buffering=0) as fh:  # unbuffered: closing it has nothing left to write
            try:
                while True:
                    fh.write(b"\0" * 65536)
            except OSError:
                pass
        planted = [f"/etc/full{i:03d}.conf" for i in range(200)]
        for p in planted:
            (d.host.root / p.lstrip("/")).write_text("x" * 200 + "\n")
        wait_for(lambda: "degraded: database" in status(d), 30, "STATUS to say the database is degraded")
        degraded = [e for e in journal.entries() if e.get("MESSAGE_ID") == Event.DEGRADED.message_id]
        assert degraded and degraded[0]["NIXDRIFT_DEGRADED"] == "database"
        wait_for(lambda: 'nixdrift_degraded{what="database"} 1' in _read(prom / "nixdrift.prom"), 10, "the metric")
        pings = len(d.notify.states("WATCHDOG"))
        wait_for(lambda: len(d.notify.states("WATCHDOG")) >= pings + 3, 5, "WATCHDOG to go on (a restart cannot help)")
        filler.unlink()  # space again: the retry records everything planted meanwhile
        wait_for(lambda: "degraded" not in status(d), 30, "STATUS to be clear again")
        assert [e for e in journal.entries() if e.get("MESSAGE_ID") == Event.RECOVERED.message_id]
        # SQLite resolves /proc/PID/root to "/": ask from inside the daemon's mount namespace
        query = (
            "import json, sqlite3, sys; db = sqlite3.connect(sys.argv[1]); print(json.dumps(db.execute("
            "\"SELECT path, COUNT(*) FROM events WHERE kind = 'new' AND path LIKE '/etc/full%' GROUP BY path\""
            ").fetchall()))"
        )
        argv = ["nsenter", "-t", str(d.proc.pid), "-m", "--", sys.executable, "-c", query, str(d.state / "history.db")]
        rows = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout)
        assert dict(rows) == {p: 1 for p in planted}  # every one recorded as new, exactly once
        d.stop()
    finally:
        journal.close()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_an_observer_that_died_is_restarted_and_reported(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    batches: list[Batch] = []
    reports: list[tuple[str, str | None]] = []
    deb = Debouncer(batches.append, delay=0.05)
    deb.start()
    w = Watcher(
        Root.of(tmp_path),
        [Tree("/etc", True)],
        deb,
        lambda why: None,
        on_tree=lambda t, p: reports.append((t.host_path, p)),
    )
    w.start()
    try:
        observer = w.snapshot()[1]["/etc"]
        observer.stop()  # the thread ends, as it would on an unexpected error in watchdog
        observer.join(5)
        w.maintain()
        assert reports[0] == ("/etc", "its observer thread died") and reports[-1] == ("/etc", None)
        assert w.snapshot()[1]["/etc"] is not observer and w.health().healthy
        (tmp_path / "etc/after.conf").write_text("x")
        wait_for(lambda: any(str(tmp_path / "etc/after.conf") in b.paths for b in batches), 5, "an event")
    finally:
        w.stop()
        deb.stop()
