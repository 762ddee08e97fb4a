"""Issue 9 (1): a storm of 20,000 files under /etc neither crashes the daemon nor loses a finding.

The main thread builds STATUS while the worker reconciles thousands of findings; before the fix
it read the worker's dict mid-update and died with "dictionary changed size during iteration".
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import psutil
import pytest
from daemon_harness import Daemon, wait_for
from daemon_host import build_host

pytestmark = [pytest.mark.nix, pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")]

FILES = 20_000


def _kinds(state: Path, kind: str) -> dict[str, int]:
    """path -> number of `kind` events below /etc/storm in the history database."""
    db = sqlite3.connect(state / "history.db", timeout=30)
    try:
        rows = db.execute(
            "SELECT path, COUNT(*) FROM events WHERE kind = ? AND path LIKE '/etc/storm/%' GROUP BY path", (kind,)
        ).fetchall()
    finally:
        db.close()
    return {str(p): int(n) for p, n in rows}


def test_storm_of_files_created_then_deleted(tmp_path: Path) -> None:
    host = build_host(tmp_path)
    (tmp_path / "config.yaml").write_text("alertThreshold: low\n")
    d = Daemon(host=host, state=tmp_path / "state", config=tmp_path / "config.yaml").start(watchdog_usec=400_000)
    try:
        d.wait_ready()
        proc = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
        storm = host.etc("storm")
        storm.mkdir()
        names = {f"/etc/storm/f{i:05d}.conf" for i in range(FILES)}
        for name in names:
            (host.root / name.lstrip("/")).write_text("x\n")
        wait_for(lambda: d.exited() or len(_kinds(d.state, "new")) == FILES, 180, "every file recorded as new")
        assert not d.exited(), "\n".join(d.lines[-30:])
        shutil.rmtree(storm)
        wait_for(lambda: d.exited() or len(_kinds(d.state, "resolved")) == FILES, 180, "every file resolved")
        assert not d.exited(), "\n".join(d.lines[-30:])
        new, resolved = _kinds(d.state, "new"), _kinds(d.state, "resolved")
        assert set(new) == names and set(resolved) == names
        assert {n for n in new.values()} == {1} and {n for n in resolved.values()} == {1}
        db = sqlite3.connect(d.state / "history.db", timeout=30)
        stale = db.execute(
            "SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL AND id LIKE 'etc/storm/%'"
        ).fetchone()[0]
        db.close()
        assert stale == 0
        assert proc.memory_info().rss < 300 * 1024 * 1024
        assert not [x for x in d.lines if "Traceback" in x], "\n".join(d.lines[-40:])
    finally:
        if not d.exited():
            d.stop(timeout=10)
