"""`nixdrift daemon` end to end: a subprocess on a fixture host, real inotify, real sd_notify socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from daemon_harness import Daemon, wait_for
from daemon_host import build_host

pytestmark = [pytest.mark.nix, pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")]

CONFIG = "alertThreshold: low\n"


_STARTED: list[Daemon] = []


def make_daemon(tmp: Path, config: str = CONFIG) -> Daemon:
    host = build_host(tmp)
    (tmp / "config.yaml").write_text(config)
    d = Daemon(host=host, state=tmp / "state", config=tmp / "config.yaml")
    _STARTED.append(d)
    return d


@pytest.fixture(autouse=True)
def _no_daemon_left_behind() -> Iterator[None]:
    """A failing test must not leave its daemon running."""
    yield
    for d in _STARTED:
        if d.proc is not None and d.proc.poll() is None and d is not _MODULE.get("running"):
            d.proc.kill()
            d.proc.wait(5)


_MODULE: dict[str, Daemon] = {}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = make_daemon(tmp_path_factory.mktemp("svc"))
    _MODULE["running"] = d
    try:
        d.start(watchdog_usec=600_000)
        d.wait_ready()
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


def test_notify_ready_status_watchdog(running: Daemon) -> None:
    assert running.notify is not None
    status = running.notify.states("STATUS")
    assert status and "drift:" in status[0] and "watch: inotify ok" in status[0] and "degraded" not in status[0]
    # WATCHDOG_USEC=0.6 s: keep-alives every 0.3 s while healthy
    wait_for(lambda: len(running.notify.states("WATCHDOG")) >= 3, 5, "three WATCHDOG=1")  # type: ignore[union-attr]


def test_new_file_in_etc_alerts(running: Daemon) -> None:
    (running.host.etc("imperative.conf")).write_text("x=1\n")
    a = running.wait_alert(event="new", path="/etc/imperative.conf")
    assert a.id.startswith("etc/")


def test_edit_of_managed_copy_alerts(running: Daemon) -> None:
    with running.host.etc("motd").open("a") as fh:
        fh.write("edited by hand\n")
    running.wait_alert(event="new", path="/etc/motd")


def test_rename_over_managed_copy_is_one_change(running: Daemon) -> None:
    tmp = running.host.etc(".nanorc.swp")
    tmp.write_text("set wrap\n")
    os.chmod(tmp, 0o644)
    os.rename(tmp, running.host.etc("nanorc"))
    running.wait_alert(event="new", path="/etc/nanorc")
    assert not [a for a in running.alerts() if ".nanorc.swp" in a.path and a.event == "new"]


def test_chmod_alerts(running: Daemon) -> None:
    os.chmod(running.host.etc("inputrc"), 0o666)
    running.wait_alert(event="new", path="/etc/inputrc")


def test_delete_alerts(running: Daemon) -> None:
    running.host.etc("bashrc").unlink()
    running.wait_alert(event="new", path="/etc/bashrc")


def test_new_unit_file_alerts(running: Daemon) -> None:
    # /etc/systemd/system is the closure's, read-only, as on NixOS: a unit by hand goes to /run
    unit = running.host.root / "run/systemd/system/backdoor.service"
    unit.write_text("[Service]\nExecStart=/bin/sh -c 'nc -l 4444'\n")
    running.wait_alert(event="new", id="backdoor.service")


def test_group_edit_alerts(running: Daemon) -> None:
    group = running.host.etc("group")
    group.write_text(group.read_text().replace("wheel:x:1:", "wheel:x:1:alice"))
    a = running.wait_alert(event="new", id="wheel")
    assert a.severity == "critical" and a.path == "/etc/group"


def test_nix_env_install_alerts(running: Daemon) -> None:
    running.host.nix_env_install("hello-2.12.1")
    running.wait_alert(event="new", id="hello", timeout=20)


def test_resolved_drift_is_recorded(running: Daemon) -> None:
    path = running.host.etc("short-lived.conf")
    path.write_text("x\n")
    running.wait_alert(event="new", path="/etc/short-lived.conf")
    path.unlink()
    running.wait_alert(event="resolved", path="/etc/short-lived.conf")
    out = _history(running, "--id", "etc/short-lived.conf*", "--format", "json")
    kinds = [e["kind"] for e in json.loads(out)]
    assert "new" in kinds and "resolved" in kinds


def _history(d: Daemon, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "nixdrift", "history", "--state-dir", str(d.state), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def test_sigterm_stops_within_two_seconds(tmp_path: Path) -> None:
    d = make_daemon(tmp_path).start()
    d.wait_ready()
    took = d.stop(signal.SIGTERM)
    assert took < 2.0
    assert d.proc is not None and d.proc.returncode == 0
    assert d.notify is not None and "1" in d.notify.states("STOPPING")


def test_sighup_reloads_config(tmp_path: Path) -> None:
    d = make_daemon(tmp_path, "alertThreshold: critical\n").start()
    d.wait_ready()
    d.host.etc("quiet.conf").write_text("x\n")  # medium: below the threshold, no alert
    wait_for(lambda: _recorded_new(d, "/etc/quiet.conf"), 20, "quiet.conf recorded before the reload")
    d.config.write_text("alertThreshold: low\n")
    d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    d.wait_log("reloading")
    d.host.etc("loud.conf").write_text("x\n")
    d.wait_alert(event="new", path="/etc/loud.conf")
    assert not [a for a in d.alerts() if a.path == "/etc/quiet.conf"]
    d.stop()


def test_kill_9_mid_scan_and_restart_loses_nothing(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    d.env["NIXDRIFT_TEST_PAUSE_AT"] = "capture@3"  # job 1 is the start scan, job 2 the first event
    d.start()
    d.wait_ready()
    d.host.etc("before.conf").write_text("x\n")
    d.wait_alert(event="new", path="/etc/before.conf")
    # the next scan (SIGHUP: re-evaluate and rescan everything) stops once it has begun; kill it there
    d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    marker = d.state / "paused-at-capture"
    wait_for(marker.exists, 20, "the rescan to be under way")
    d.proc.kill()  # type: ignore[union-attr]
    d.proc.wait(5)  # type: ignore[union-attr]
    db = sqlite3.connect(d.state / "history.db")
    assert db.execute("SELECT resolved_at FROM findings WHERE id LIKE 'etc/before.conf%'").fetchone() == (None,)
    assert db.execute("SELECT COUNT(*) FROM scans WHERE finished IS NULL").fetchone()[0] == 1  # the killed one
    db.close()
    # meanwhile: one drift goes away, another appears
    d.host.etc("before.conf").unlink()
    d.host.etc("meanwhile.conf").write_text("x\n")
    d.env.pop("NIXDRIFT_TEST_PAUSE_AT")
    d.start()
    d.wait_ready()
    d.wait_alert(event="resolved", path="/etc/before.conf")
    d.wait_alert(event="new", path="/etc/meanwhile.conf")
    d.stop()
    db = sqlite3.connect(d.state / "history.db")
    row = db.execute("SELECT first_seen, resolved_at FROM findings WHERE id LIKE 'etc/before.conf%'").fetchone()
    assert row[0] and row[1]
    assert db.execute("SELECT COUNT(*) FROM scans WHERE error = 'interrupted'").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM scans WHERE finished IS NULL").fetchone()[0] == 0
    db.close()


def test_event_storm_is_coalesced_bounded_and_complete(tmp_path: Path) -> None:
    d = make_daemon(tmp_path).start()
    d.wait_ready()
    proc = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    rss_before = proc.memory_info().rss
    storm = d.host.etc("storm")
    storm.mkdir()
    names = [f"f{i:04d}.conf" for i in range(2000)]
    for rnd in range(5):  # 10,000 changes to 2,000 distinct files, as fast as this process writes
        for n in names:
            (storm / n).write_text(f"{rnd}\n")
    want = {f"/etc/storm/{n}" for n in names}

    def recorded() -> set[str]:
        db = sqlite3.connect(d.state / "history.db", timeout=30)
        try:
            rows = db.execute("SELECT path FROM events WHERE kind = 'new' AND path LIKE '/etc/storm/%'").fetchall()
        finally:
            db.close()
        return {str(r[0]) for r in rows}

    wait_for(lambda: want <= recorded(), 60, "every stormed file in the history")
    scans = [x for x in d.lines if "scanned" in x and "(event" in x]
    assert len(scans) < 200  # coalesced: far fewer captures than changes
    # the journal gets one alert per burst and directory, naming the count and the first paths
    # (a batch of 20 or fewer is alerted file by file)
    bursts = [x for x in d.lines if "nixdrift: ALERT new" in x and "below /etc/storm" in x]
    assert bursts and "/etc/storm/f" in bursts[0]
    storm_alerts = [x for x in d.lines if x.startswith("nixdrift: ALERT new") and "/etc/storm/" in x]
    assert len(storm_alerts) < len(want) / 4  # file by file it would be 2,000
    assert proc.memory_info().rss - rss_before < 150 * 1024 * 1024
    d.stop()


def test_inotify_overflow_is_detected_and_rescanned(tmp_path: Path) -> None:
    knob = Path("/proc/sys/fs/inotify/max_queued_events")
    if not os.access(knob, os.W_OK):
        pytest.skip("cannot lower max_queued_events here")
    d = make_daemon(tmp_path)
    old = knob.read_text()
    knob.write_text("16\n")  # only inotify instances created now get the tiny queue
    try:
        d.start()
        d.wait_log("watching", timeout=30)
        d.wait_log(f"{d.host.root}/run/systemd/transient with inotify")
    finally:
        knob.write_text(old)
    d.wait_ready()
    burst = d.host.etc("burst")
    burst.mkdir()
    for i in range(3000):
        (burst / f"b{i}").write_text("x")
    d.wait_log("filesystem events lost", timeout=10)
    # each overflow re-walks /etc (slow on 2 cores); the burst is one alert, the history has every file
    wait_for(lambda: _recorded_new(d, "/etc/burst/b2999"), 30, "the last file of the burst recorded")
    d.wait_log("nixdrift: ALERT new medium: new: ", timeout=10)
    assert any("below /etc/burst" in x for x in d.lines if x.startswith("nixdrift: ALERT new"))
    d.stop()


def _recorded_new(d: Daemon, path: str) -> bool:
    db = sqlite3.connect(f"file:{d.state / 'history.db'}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute("SELECT 1 FROM events WHERE kind = 'new' AND path = ?", (path,)).fetchone() is not None
    finally:
        db.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nixdrift", *args], capture_output=True, text=True, timeout=120)


def test_accept_quiets_drift_until_it_changes_and_report_reads_the_daemon(running: Daemon, tmp_path: Path) -> None:
    path = running.host.etc("vendor.conf")
    path.write_text("one\n")
    a = running.wait_alert(event="new", path="/etc/vendor.conf")
    done = _cli("accept", a.id, "--reason", "vendor file", "--state-dir", str(running.state))
    assert done.returncode == 0 and f"accepted {a.id}" in done.stdout
    common = ["--flake", str(running.host.flake), "--host", "demo", "--root", str(running.host.root)]
    seen = len(running.lines)
    running.host.etc("poke.conf").write_text("poke\n")  # any event makes the daemon publish its report again
    wait_for(lambda: any("published" in x for x in running.lines[seen:]), 20, "a report after the acceptance")
    proc = _cli("report", *common, "--state-dir", str(running.state), "--max-age", "3600", "--out", str(tmp_path))
    assert "using the daemon's report" in proc.stderr, proc.stderr[-2000:]
    report = json.loads((tmp_path / "drift-report.json").read_text())
    assert {f["id"]: f["accepted"] for f in report["findings"]}.get(a.id) is True
    before = len([x for x in running.alerts() if x.path == "/etc/vendor.conf"])
    path.write_text("two\n")
    changed = running.wait_alert(event="new", path="/etc/vendor.conf", message="accepted")
    assert changed and len([x for x in running.alerts() if x.path == "/etc/vendor.conf"]) == before + 1


def test_reading_the_flake_repository_does_not_trigger_itself(running: Daemon) -> None:
    """The flake lives below the watched /etc (as /etc/nixos does): git's own lock files and the
    daemon's reads of the repository must not start another read, over and over."""

    def repo_scans() -> int:
        return sum(1 for line in list(running.lines) if "scanned repo" in line)

    before = repo_scans()
    (running.host.flake / "notes.txt").write_text("untracked\n")
    wait_for(lambda: repo_scans() > before, 30, "a repo scan after the change")
    after_change = repo_scans()
    running.host.etc("barrier.conf").write_text("x\n")  # events are handled in order: a barrier
    running.wait_alert(event="new", id="etc/barrier.conf")
    assert repo_scans() - after_change <= 1


def test_a_unit_directory_that_appears_later_is_watched(tmp_path: Path) -> None:
    """systemd makes /run/systemd/transient with the first transient unit, after the daemon started."""
    d = make_daemon(tmp_path)
    transient = d.host.root / "run/systemd/transient"
    shutil.rmtree(transient)
    d.start()
    d.wait_ready()
    transient.mkdir()
    (transient / "run-u7.service").write_text("[Service]\nExecStart=/bin/sleep 1000\n")
    d.wait_alert(event="new", id="services/run-u7.service/transient", timeout=30)
    (transient / "run-u8.service").write_text("[Service]\nExecStart=/bin/sleep 1000\n")  # now by inotify
    d.wait_alert(event="new", id="services/run-u8.service/transient", timeout=15)
    d.stop()
