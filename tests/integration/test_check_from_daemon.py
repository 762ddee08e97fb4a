"""`nixdrift check` on the live host answers from the daemon's fresh state, says so in its header,
applies what was accepted since, and scans itself when the state is absent, stale, refused with
--fresh, or the check is of another root.

A real `nixdrift daemon` scans a fixture host and publishes its state; the "live host" of each check
is that fixture's /etc and /run bound over the machine's in a private mount and network namespace
(the machine's own /etc and /run are untouched)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostscan import as_live_host
from nixdrift.capture import statcache
from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import demo_host
from nixdrift.service.history import Store, stored_report

pytestmark = [
    pytest.mark.nix,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare (mount namespaces)"
    ),
]

HEADER = re.compile(r"from the daemon's scan at (\S+) \(age (\d+) s; --fresh to scan now\)")


@dataclass(frozen=True)
class Setup:
    built: BuiltHost
    state: Path
    cache: Path
    daemon_ids: frozenset[str]  # what the daemon's published report holds


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    base = tmp_path_factory.mktemp("from-daemon")
    built = demo_host(base / "demo").build()
    built.add_etc_file("before-daemon.conf", "planted before the daemon's scan\n")
    state = base / "state"
    config = base / "config.yaml"
    config.write_text("alertThreshold: low\n")
    env = {**os.environ, "NIXDRIFT_JOURNAL_SOCKET": "/nonexistent", "NIXDRIFT_QUIET": "1"}
    env.pop("NOTIFY_SOCKET", None)
    argv = [sys.executable, "-m", "nixdrift", "daemon", "--flake", str(built.flake), "--host", built.name]
    argv += ["--root", str(built.root), "--state-dir", str(state), "--config", str(config)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait(lambda: proc.poll() is not None or stored_report(state, 3600) is not None, 300, "the daemon's report")
        assert proc.poll() is None, proc.communicate()[1][-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    report = stored_report(state, 3600)
    assert report is not None
    # drift the daemon never saw (it is stopped): only a scan of this moment finds it
    built.add_etc_file("after-daemon.conf", "planted after the daemon's scan\n")
    return Setup(built, state, base / "cache", frozenset(f.id for f in report.findings))


# the CLI, saying on its last stderr line which of these it imported
PROBE = """
import json, sys
from nixdrift import cli
code = cli.main(sys.argv[1:])
heavy = ("nixdrift.pipeline", "nixdrift.categories", "nixdrift.capture", "nixdrift.declared")
heavy += ("git", "psutil", "jeepney")
print(json.dumps(sorted(h for h in heavy if h in sys.modules)), file=sys.stderr)
sys.exit(code)
"""


def live_check(s: Setup, *extra: str, fmt: str = "json", cli: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`nixdrift check` on the live root, which is the fixture host in a namespace of its own."""
    root = s.built.root
    argv = [
        *(cli or (sys.executable, "-m", "nixdrift")),
        "check",
        "--flake",
        str(s.built.flake),
        "--host",
        s.built.name,
    ]
    argv += ["--cache-dir", str(s.cache), "--format", fmt, "--state-dir", str(s.state), *extra]
    env = {**os.environ, "NIXDRIFT_QUIET": "1"}
    return subprocess.run(
        as_live_host(root, argv),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def ids(proc: subprocess.CompletedProcess[str]) -> set[str]:
    assert proc.returncode in (0, 1, 2), proc.stderr
    return {f["id"] for f in json.loads(proc.stdout)["findings"]}


def test_the_daemon_s_fresh_state_is_the_answer_and_the_header_says_so(setup: Setup) -> None:
    assert "etc/before-daemon.conf" in setup.daemon_ids
    answered = live_check(setup, fmt="text")
    lines = answered.stdout.splitlines()
    assert lines[0].startswith(f"nixdrift: {setup.built.name} at "), answered.stdout
    header = HEADER.fullmatch(lines[1])
    assert header is not None, answered.stdout
    assert int(header.group(2)) < 600
    assert "etc/before-daemon.conf" in answered.stdout
    assert "etc/after-daemon.conf" not in answered.stdout  # the daemon's view, not a new scan

    as_json = live_check(setup)
    assert ids(as_json) == setup.daemon_ids
    assert HEADER.search(as_json.stderr), as_json.stderr  # JSON stays JSON: the note is on stderr


def test_an_answer_from_the_daemon_s_state_loads_no_collector(setup: Setup) -> None:
    answered = live_check(setup, cli=(sys.executable, "-c", PROBE))
    assert HEADER.search(answered.stderr), answered.stderr
    assert json.loads(answered.stderr.splitlines()[-1]) == []
    scanned = live_check(setup, "--fresh", cli=(sys.executable, "-c", PROBE))
    assert "nixdrift.pipeline" in json.loads(scanned.stderr.splitlines()[-1])  # the probe sees them when used


def test_the_daemon_keeps_its_stat_cache_in_its_state_directory(setup: Setup) -> None:
    stored = statcache.file_for(setup.state / "eval-cache", setup.built.root)
    statcache.parse(stored.read_bytes())  # written whole, by the daemon's scan


def test_fresh_scans_and_finds_what_changed_since_the_daemon_s_scan(setup: Setup) -> None:
    fresh = live_check(setup, "--fresh")
    assert not HEADER.search(fresh.stdout + fresh.stderr)
    assert {"etc/before-daemon.conf", "etc/after-daemon.conf"} <= ids(fresh)


def test_another_root_is_never_answered_by_the_daemon(setup: Setup) -> None:
    proc = live_check(setup, "--root", str(setup.built.root))
    assert not HEADER.search(proc.stdout + proc.stderr)
    assert "etc/after-daemon.conf" in ids(proc)


def test_an_absent_state_directory_means_a_scan(setup: Setup, tmp_path: Path) -> None:
    proc = live_check(setup, "--state-dir", str(tmp_path / "no-daemon-here"))
    assert not HEADER.search(proc.stdout + proc.stderr)
    assert "etc/after-daemon.conf" in ids(proc)
    assert not (tmp_path / "no-daemon-here").exists()  # looking created nothing


def test_drift_accepted_after_the_daemon_s_report_is_shown_accepted(setup: Setup) -> None:
    accept = subprocess.run(
        [
            sys.executable,
            "-m",
            "nixdrift",
            "accept",
            "etc/before-daemon.conf",
            "--reason",
            "x",
            "--state-dir",
            str(setup.state),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert accept.returncode == 0, accept.stderr
    proc = live_check(setup)
    assert HEADER.search(proc.stderr), proc.stderr
    findings = {f["id"]: f for f in json.loads(proc.stdout)["findings"]}
    assert findings["etc/before-daemon.conf"]["accepted"] is True


def test_a_stale_state_means_a_scan(setup: Setup) -> None:
    """Last in this module: it ages the state. Every category was captured two hours ago."""
    store = Store.open(setup.state, repair=False)
    try:
        captured = json.loads(store.meta("captured_at") or "{}")
        assert captured
        store.put_meta("captured_at", json.dumps({c: time.time() - 7200 for c in captured}))
    finally:
        store.close()
    stale = live_check(setup)
    assert not HEADER.search(stale.stdout + stale.stderr)
    assert "etc/after-daemon.conf" in ids(stale)
    # a longer --max-age takes it again
    tolerant = live_check(setup, "--max-age", "10000")
    assert HEADER.search(tolerant.stderr), tolerant.stderr
    assert "etc/after-daemon.conf" not in ids(tolerant)


def test_a_state_directory_this_user_cannot_read_means_a_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`nixdrift check` as a user other than root on a host whose daemon keeps its state 0700."""
    import argparse

    from nixdrift import config
    from nixdrift.commands import check
    from nixdrift.commands.common import Target
    from nixdrift.policy import Policy
    from nixdrift.rootfs import Root

    state = tmp_path / "private" / "state"
    state.mkdir(parents=True)
    (state / "history.db").write_bytes(b"")
    (tmp_path / "private").chmod(0o700)
    args = argparse.Namespace(fresh=False, max_age=3600.0, state_dir=str(state))
    target = Target(config.Config(), Root(), "/etc/nixos", "web1", Policy())
    os.seteuid(65534)
    try:
        answer = check._from_daemon(args, target)
    finally:
        os.seteuid(0)
    assert answer is None
    assert f"the daemon's state in {state} cannot be read (Permission denied): scanning" in capsys.readouterr().err
