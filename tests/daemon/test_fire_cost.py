"""Issue 9 (5): the cost of an event follows what changed, not what is already known."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from daemon_harness import make_daemon, wait_for

pytestmark = [pytest.mark.nix, pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")]


def rows(state: Path) -> dict[str, tuple[str, str]]:
    db = sqlite3.connect(f"file:{state / 'history.db'}?mode=ro", uri=True, timeout=30)
    try:
        got = db.execute("SELECT id, data, last_seen FROM findings WHERE id LIKE 'etc/many/%'").fetchall()
    finally:
        db.close()
    return {str(i): (str(data), str(seen)) for i, data, seen in got}


def test_an_event_rewrites_only_the_findings_that_changed(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    many = d.host.etc("many")
    many.mkdir(parents=True)
    for i in range(500):
        (many / f"m{i:03d}").write_text("x\n")
    d.start()
    d.wait_ready()
    before = rows(d.state)
    assert len(before) == 500
    time.sleep(1.1)  # the history's clock counts seconds: make "seen again" distinguishable
    d.host.etc("other.conf").write_text("x\n")  # an event in the same category, judged at its path
    d.wait_alert(event="new", path="/etc/other.conf")
    after = rows(d.state)
    assert {i: data for i, (data, _seen) in after.items()} == {i: data for i, (data, _seen) in before.items()}
    assert after == before  # nor "seen": the event's capture did not look at them
    d.proc.send_signal(signal.SIGHUP)  # a whole capture (the reload's): each is seen again, none rewritten
    wait_for(lambda: {s for _d, s in rows(d.state).values()} != {s for _d, s in before.values()}, 60, "seen again")
    after = rows(d.state)
    assert {i: data for i, (data, _seen) in after.items()} == {i: data for i, (data, _seen) in before.items()}
    d.stop()


def test_report_files_are_written_at_most_once_a_second_of_activity(tmp_path: Path) -> None:
    if shutil.which("inotifywait") is None:
        pytest.skip("needs inotifywait")
    d = make_daemon(tmp_path).start()
    d.wait_ready()
    watcher = subprocess.Popen(
        ["inotifywait", "-m", "-e", "moved_to", "--format", "%f", str(d.state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        errors = watcher.stderr
        assert errors is not None
        wait_for(lambda: "established" in errors.readline(), 10, "inotifywait to watch")
        seen = len(d.lines)
        started = time.monotonic()
        for i in range(20):  # twenty separate changes, each its own capture (apart by more than the debounce)
            d.host.etc(f"busy{i:02d}.conf").write_text("x\n")
            time.sleep(0.2)
        d.wait_alert(event="new", path="/etc/busy19.conf")
        active = time.monotonic() - started
        last = max(i for i, x in enumerate(d.lines) if "busy19.conf" in x)
        wait_for(lambda: any("published" in x for x in d.lines[last:]), 10, "the publication after the last change")
        scans = [x for x in d.lines[seen:] if "scanned etc" in x]
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    written = [line for line in out.splitlines() if line == "nixdrift.prom"]
    assert len(scans) >= 10  # the changes were many captures ...
    assert 1 <= len(written) <= active + 2  # ... but the metrics file was rewritten about once a second
    d.stop()
