"""Issue 9 follow-up: an event re-captures /etc at its paths only, whatever is already known.

With 15,000 files of /etc already recorded as drift, an edit must still alert, with the finding a
full capture gives, and leave the others as they are; a delete among them resolves that one only.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from daemon_harness import make_daemon, wait_for
from daemon_host import build_host

pytestmark = [pytest.mark.nix, pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")]

KNOWN = 15_000


def active(state: Path) -> dict[str, str]:
    db = sqlite3.connect(f"file:{state / 'history.db'}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT id, severity FROM findings WHERE resolved_at IS NULL").fetchall()
    finally:
        db.close()
    return {str(i): str(s) for i, s in rows}


def test_an_edit_alerts_among_15000_known_findings_and_touches_only_its_own(tmp_path: Path) -> None:
    host = build_host(tmp_path)
    many = host.etc("many")
    many.mkdir()
    for i in range(KNOWN):
        (many / f"m{i:05d}").write_text("x\n")
    d = make_daemon(tmp_path, host=host)
    d.start(watchdog_usec=None)
    d.wait_ready(300)
    before = active(d.state)
    assert sum(1 for i in before if i.startswith("etc/many/")) == KNOWN

    seen = len(d.lines)
    host.etc("sudoers.d").mkdir(exist_ok=True)
    host.etc("sudoers.d/99-mallory").write_text("mallory ALL=(ALL) NOPASSWD: ALL\n")
    alert = d.wait_alert(timeout=60, event="new", path="/etc/sudoers.d/99-mallory")
    assert alert.id == "etc/sudoers.d/99-mallory"
    assert alert.severity in ("high", "critical")  # etc-sensitive, not a plain unmanaged file
    # the event was judged at its paths, not by capturing all of /etc again
    # (the worker logs the scan after it delivered the alert: wait for the line, with a deadline)
    wait_for(
        lambda: any("scanned etc (etc at" in x for x in list(d.lines)[seen:]),
        30,
        "a scan of etc at the event's paths; got:\n" + "\n".join(d.lines[seen:]),
    )

    host.etc("motd").write_text("edited by hand\n")  # a managed copy: its finding is "changed"
    d.wait_alert(timeout=60, event="new", path="/etc/motd")
    (many / "m00042").unlink()
    d.wait_alert(timeout=60, event="resolved", path="/etc/many/m00042")

    after = active(d.state)
    assert set(after) - set(before) == {"etc/sudoers.d/99-mallory", "etc/motd"}
    assert set(before) - set(after) == {"etc/many/m00042"}
    assert after["etc/sudoers.d/99-mallory"] == alert.severity
    # nothing else was resolved or announced along the way
    others = [a for a in d.alerts() if a.path.startswith("/etc/many/") and a.path != "/etc/many/m00042"]
    assert not others
    d.stop()
