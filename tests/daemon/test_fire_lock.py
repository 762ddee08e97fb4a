"""Issue 9 (4): one daemon per state directory; CLI readers keep working beside it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import Daemon, wait_for
from daemon_host import build_host

pytestmark = [pytest.mark.nix, pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")]


def test_a_second_daemon_on_the_same_state_directory_exits_2(tmp_path: Path) -> None:
    host = build_host(tmp_path)
    (tmp_path / "config.yaml").write_text("alertThreshold: low\n")
    first = Daemon(host=host, state=tmp_path / "state", config=tmp_path / "config.yaml").start()
    second = Daemon(host=host, state=tmp_path / "state", config=tmp_path / "config.yaml")
    third = Daemon(host=host, state=tmp_path / "state", config=tmp_path / "config.yaml")
    try:
        first.wait_ready()
        second.start()
        wait_for(second.exited, 30, "the second daemon to give up")
        assert second.proc is not None and second.proc.returncode == 2
        refusal = [x for x in second.lines if "another nixdrift daemon" in x]
        assert len(refusal) == 1 and f"pid {first.proc.pid}" in refusal[0]  # type: ignore[union-attr]
        assert not second.notify or "1" not in second.notify.states("READY")
        # the first goes on alone: one new file is one alert, not two
        host.etc("once.conf").write_text("x\n")
        first.wait_alert(event="new", path="/etc/once.conf")
        hist = subprocess.run(
            [sys.executable, "-m", "nixdrift", "history", "--state-dir", str(first.state), "--id", "etc/once.conf*"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert hist.returncode == 0 and "once.conf" in hist.stdout, hist.stderr
        # the lock dies with its holder, even by SIGKILL: a restarted daemon is not refused
        first.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        first.proc.wait(10)  # type: ignore[union-attr]
        third.start()
        third.wait_ready()
    finally:
        for d in (first, second, third):
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait(10)
