"""A comparator that raises inside the daemon is a scan that failed: the same journald "scan
failed" alert (its MESSAGE_ID), history event and STATUS a capture failure gets, once until it
judges again, and the category's recorded drift is neither resolved nor called "ok"."""

from __future__ import annotations

import shutil
import signal
import sqlite3
from pathlib import Path

import pytest
from daemon_harness import Daemon, NotifySocket, wait_for
from daemon_host import build_host

from nixdrift.sinks.journald import Event

pytestmark = [pytest.mark.nix, pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")]

# Loaded into the daemon as sitecustomize: the users comparator raises while a flag file exists.
BREAK = """
import dataclasses, os
from nixdrift.categories import TABLE
from nixdrift.models import Category

_row = TABLE[Category.USERS]
_real = _row.comparator

def _comparator(declared, section):
    if os.path.exists(os.environ["NIXDRIFT_TEST_BREAK_USERS"]):
        raise RuntimeError("boom in the users comparator")
    return _real(declared, section)

TABLE[Category.USERS] = dataclasses.replace(_row, comparator=_comparator)
"""


def test_a_raising_comparator_alerts_scan_failed_like_a_failed_capture(tmp_path: Path) -> None:
    host = build_host(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BREAK)
    flag = tmp_path / "break-users"
    flag.write_text("")
    (tmp_path / "config.yaml").write_text("alertThreshold: low\n")
    journal = NotifySocket(tmp_path / "journal.sock")  # the journal's native socket, bound here
    env = {
        "PYTHONPATH": str(site),
        "NIXDRIFT_TEST_BREAK_USERS": str(flag),
        "NIXDRIFT_JOURNAL_SOCKET": str(journal.path),
    }
    d = Daemon(host=host, state=tmp_path / "state", config=tmp_path / "config.yaml", env=env).start()
    wanted = Event.SCAN_FAILED.message_id

    def failed() -> list[dict[str, str]]:
        return [e for e in journal.entries() if e.get("MESSAGE_ID") == wanted]

    try:
        d.wait_ready()
        entries = wait_for(failed, 30, "a scan-failed journal entry")
        assert isinstance(entries, list) and len(entries) == 1, entries
        assert entries[0]["NIXDRIFT_CATEGORY"] == "users"
        assert "users comparator failed: RuntimeError: boom in the users comparator" in entries[0]["MESSAGE"]
        db = sqlite3.connect(f"file:{d.state / 'history.db'}?mode=ro", uri=True, timeout=30)
        try:
            events = db.execute("SELECT detail FROM events WHERE kind = 'scan-failed'").fetchall()
            scans = db.execute("SELECT ok, error FROM scans WHERE finished IS NOT NULL ORDER BY seq").fetchall()
        finally:
            db.close()
        assert [e[0] for e in events] == [entries[0]["MESSAGE"]]
        assert scans[0] == (0, "users")  # the first scan, which read every category, did not succeed
        # while it keeps failing, a whole rescan (a reload) says nothing new: one alert until it judges
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: sum(1 for x in d.lines if "scanned" in x and "users" in x) >= 2, 60, "users scanned again")
        assert failed() == entries
    finally:
        if not d.exited():
            d.stop(timeout=10)
        journal.close()
