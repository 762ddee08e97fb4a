"""Acting on the wrong machine (issue 8, items 5 and 6), with real bash, real namespaces, the real CLI
and a real daemon run.

The remediation script and `nixdrift remediate --apply` run in a private mount and UTS namespace
(`unshare -m -u`) where a fixture's /etc is bind-mounted over /etc and the host name is set: a
machine of our choosing, whose /etc is the fixture's, so nothing of this machine is touched even
when a guard is broken.
"""

from __future__ import annotations

import grp
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from nixdrift.compare.common import finding, sh
from nixdrift.demo.activate import machine_id
from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost
from nixdrift.models import Category, FlakeInfo, Generations, Kind, Report, ScanTarget
from nixdrift.report import script
from nixdrift.service.history import stored_report

UNSHARE = shutil.which("unshare")
pytestmark = pytest.mark.skipif(
    UNSHARE is None or os.geteuid() != 0, reason="needs root and unshare (private mount and UTS namespaces)"
)

MID = "0123456789abcdef0123456789abcdef"
OTHER_MID = "fedcba9876543210fedcba9876543210"
SYSTEM = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web1"


def on_machine(
    etc: Path, hostname: str, argv: list[str], *, run: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run argv on "another machine": its /etc (and /run) are the fixture's, its host name is ours."""
    steps = [f"hostname {shlex.quote(hostname)}", f"mount --bind {shlex.quote(str(etc))} /etc"]
    if run is not None:
        steps.append(f"mount --bind {shlex.quote(str(run))} /run")
    steps.append("exec " + shlex.join(argv))
    assert UNSHARE is not None
    env = {**os.environ, "NIXDRIFT_QUIET": "1"}
    return subprocess.run(
        [UNSHARE, "-m", "-u", "--propagation", "private", "bash", "-c", " && ".join(steps)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


# --- the script's guard, in bash ---------------------------------------------------------------


def fixture_etc(tmp_path: Path, mid: str | None) -> Path:
    """A machine's /etc: an imperative edit of the managed /etc/motd, and a machine-id."""
    etc = tmp_path / "etc"
    (etc / "static").mkdir(parents=True)
    (etc / "static" / "motd").write_text("declared\n")
    (etc / "motd").write_text("edited by hand\n")
    if mid is not None:
        (etc / "machine-id").write_text(mid + "\n")
    return etc


def relink_motd() -> Report:
    f = finding(
        rule_name="etc-changed",
        id="etc/motd",
        category=Category.ETC,
        subject="motd",
        kind=Kind.CHANGED,
        expected="symlink -> /etc/static/motd",
        actual="file",
        message="/etc/motd was replaced by hand",
        command=sh("ln", "-sfn", "/etc/static/motd", "/etc/motd"),
        safe=True,
        evidence={"path": "/etc/motd"},
    )
    return Report(
        host="web1",
        generated_at="2026-01-01T00:00:00Z",
        flake=FlakeInfo("git+file:///etc/nixos", "abc123"),
        generations=Generations(SYSTEM, SYSTEM, SYSTEM),
        categories={Category.ETC: "drift"},
        findings=(f,),
    )


def write_script(tmp_path: Path, scanned: ScanTarget | None) -> Path:
    path = tmp_path / "remediation-script.sh"
    path.write_bytes(script.encode(script.render(replace(relink_motd(), scanned=scanned))))
    path.chmod(0o755)
    return path


def untouched(etc: Path) -> bool:
    motd = etc / "motd"
    return not motd.is_symlink() and motd.read_text() == "edited by hand\n"


def relinked(etc: Path) -> bool:
    return os.readlink(etc / "motd") == "/etc/static/motd"


WEB1 = ScanTarget("web1", MID, SYSTEM, "/", True)


def test_on_the_machine_it_was_made_for_the_script_applies(tmp_path: Path) -> None:
    etc = fixture_etc(tmp_path, MID)
    path = write_script(tmp_path, WEB1)
    dry = on_machine(etc, "web1", ["bash", str(path)])
    assert dry.returncode == 0, dry.stderr
    assert "would run: ln -sfn /etc/static/motd /etc/motd" in dry.stdout and "refuse" not in dry.stdout
    assert untouched(etc)
    applied = on_machine(etc, "web1", ["bash", str(path), "--apply"])
    assert applied.returncode == 0, applied.stderr
    assert "applied 1 command(s)" in applied.stdout
    assert relinked(etc)


@pytest.mark.parametrize(
    ("hostname", "mid", "why"),
    [
        ("web2", MID, "made for host web1, this is host web2"),
        ("web1", OTHER_MID, f"made for machine-id {MID}, this machine's is {OTHER_MID}"),
        ("web1", None, f"made for machine-id {MID}, this machine's is unknown"),
    ],
    ids=["other-host-name", "other-machine-id", "no-machine-id"],
)
def test_on_another_machine_the_script_refuses_and_changes_nothing(
    tmp_path: Path, hostname: str, mid: str | None, why: str
) -> None:
    etc = fixture_etc(tmp_path, mid)
    path = write_script(tmp_path, WEB1)
    applied = on_machine(etc, hostname, ["bash", str(path), "--apply"])
    assert applied.returncode == 3, applied.stdout + applied.stderr
    assert f"nixdrift: refusing --apply: the report was {why}" in applied.stderr
    assert "+ ln" not in applied.stdout and "applied" not in applied.stdout
    assert untouched(etc)
    dry = on_machine(etc, hostname, ["bash", str(path)])  # reviewing it elsewhere is fine, and says so
    assert dry.returncode == 0, dry.stderr
    assert f"note: --apply would refuse here: the report was {why}" in dry.stdout
    assert "would run: ln -sfn /etc/static/motd /etc/motd" in dry.stdout
    assert untouched(etc)


def test_a_script_made_from_a_root_scan_never_applies_even_on_that_machine(tmp_path: Path) -> None:
    etc = fixture_etc(tmp_path, MID)
    path = write_script(tmp_path, replace(WEB1, root=str(tmp_path), live=False))
    assert "(--root): --apply refuses" in path.read_text()
    applied = on_machine(etc, "web1", ["bash", str(path), "--apply"])
    assert applied.returncode == 3
    assert f"the report was made from a scan of {tmp_path} (--root), not of a running machine" in applied.stderr
    assert untouched(etc)


def test_a_report_that_does_not_say_which_machine_never_applies(tmp_path: Path) -> None:
    etc = fixture_etc(tmp_path, MID)
    applied = on_machine(etc, "web1", ["bash", str(write_script(tmp_path, None)), "--apply"])
    assert applied.returncode == 3
    assert "does not record which machine it scanned" in applied.stderr
    assert untouched(etc)


def test_without_a_machine_id_the_current_system_decides(tmp_path: Path) -> None:
    etc = fixture_etc(tmp_path, None)
    run = tmp_path / "run"
    run.mkdir()
    path = write_script(tmp_path, ScanTarget("web1", None, SYSTEM, "/", True))
    (run / "current-system").symlink_to("/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-web1")
    refused = on_machine(etc, "web1", ["bash", str(path), "--apply"], run=run)
    assert refused.returncode == 3
    assert f"running {SYSTEM}, this machine runs /nix/store/bbbb" in refused.stderr
    assert untouched(etc)
    (run / "current-system").unlink()
    (run / "current-system").symlink_to(SYSTEM)
    applied = on_machine(etc, "web1", ["bash", str(path), "--apply"], run=run)
    assert applied.returncode == 0, applied.stderr
    assert relinked(etc)


def test_a_hostile_recorded_host_name_is_data_not_code(tmp_path: Path) -> None:
    etc = fixture_etc(tmp_path, MID)
    hostile = "web1\n$(touch PWNED)`touch PWNED`'\"; touch PWNED \x1b[2J\u202e"
    # a stored report's JSON is not validated like a capture: any field may be hostile
    path = write_script(tmp_path, ScanTarget(hostile, hostile, hostile, hostile, True))
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, check=False).returncode == 0
    comments = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert all(line.isprintable() for line in comments)
    applied = on_machine(etc, "web1", ["bash", str(path), "--apply"])
    assert applied.returncode == 3
    assert "\x1b" not in applied.stderr and "\u202e" not in applied.stderr  # shown escaped (printf %q)
    assert untouched(etc)
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*"))
    assert not Path("PWNED").exists()


# --- the real CLI and a real daemon run --------------------------------------------------------


pytest_nix = pytest.mark.nix

CONFIG = "alertThreshold: low\nrealtime: false\nseverity:\n  etc/hosts: low\n"


def nixdrift(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NIXDRIFT_QUIET": "1"}
    return subprocess.run(
        [sys.executable, "-m", "nixdrift", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def nix_builds_as_root() -> Iterator[None]:
    """Nix as root builds with the nixbld group by default: where the machine has none (a bare
    nix-bin install), build as root itself, for this build only."""
    try:
        grp.getgrnam("nixbld")
    except KeyError:
        saved = os.environ.get("NIX_CONFIG")
        os.environ["NIX_CONFIG"] = "\n".join(filter(None, [saved, "build-users-group ="]))
        try:
            yield
        finally:
            if saved is None:
                del os.environ["NIX_CONFIG"]
            else:
                os.environ["NIX_CONFIG"] = saved
    else:
        yield


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BuiltHost, Path, Path]]:
    """web1 with DNS edited by hand and a managed /etc link removed (low and safe to revert, by the
    config), scanned by a real `nixdrift daemon --root`; yields the host, the state dir and config."""
    base = tmp_path_factory.mktemp("guard")
    built = HostTree(base / "host", name="web1").with_nameservers("1.1.1.1").with_etc_file("hosts", "127.0.0.1 x\n")
    with nix_builds_as_root():
        host = built.build()
    host.set_nameserver("8.8.8.8")
    host.remove_etc("hosts")
    config = base / "config.yaml"
    config.write_text(CONFIG)
    state = base / "state"
    argv = [sys.executable, "-m", "nixdrift", "daemon", "--flake", str(host.flake), "--host", "web1"]
    argv += ["--root", str(host.root), "--state-dir", str(state), "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    daemon = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**env, "NIXDRIFT_JOURNAL_SOCKET": "/nonexistent"},
    )
    try:

        def scanned() -> Report | None:
            assert daemon.poll() is None, "the daemon exited"
            found = stored_report(state, 3600) if (state / "history.db").exists() else None
            return found if found is not None and found.categories.get(Category.NETWORK) == "drift" else None

        wait_for(scanned, 120, "the daemon's first full report")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    yield host, state, config


@pytest_nix
def test_the_daemons_report_records_what_it_scanned(drifted: tuple[BuiltHost, Path, Path]) -> None:
    host, state, _config = drifted
    report = stored_report(state, 3600)
    assert report is not None and report.scanned is not None
    assert report.scanned.to_json() == {
        "host": "web1",
        "machine_id": machine_id("web1"),
        "system": report.generations.current,
        "root": str(host.root),
        "live": False,
    }
    assert report.generations.current is not None and report.generations.current.startswith("/nix/store/")


@pytest_nix
def test_remediate_apply_refuses_a_history_of_a_root_scan(drifted: tuple[BuiltHost, Path, Path]) -> None:
    host, state, config = drifted
    common = ["--state-dir", str(state), "--flake", str(host.flake), "--host", "web1", "--config", str(config)]
    listed = nixdrift("remediate", *common)
    assert listed.returncode == 0, listed.stderr
    assert "revert low      etc/hosts" in listed.stdout
    assert "--apply would refuse here" in listed.stderr and "(--root)" in listed.stderr
    # on "web1" itself (its /etc over ours): the findings are of a tree read with --root all the same
    applied = on_machine(host.root / "etc", "web1", [sys.executable, "-m", "nixdrift", "remediate", "--apply", *common])
    assert applied.returncode == 2, applied.stdout + applied.stderr
    assert "refusing --apply: the report was made from a scan of" in applied.stderr
    assert not os.path.lexists(host.root / "etc" / "hosts")


@pytest_nix
def test_remediate_leaves_drift_accepted_after_the_daemon_stored_it(
    drifted: tuple[BuiltHost, Path, Path], tmp_path: Path
) -> None:
    host, state, config = drifted
    copy = tmp_path / "state"  # the module's history stays as the daemon left it
    shutil.copytree(state, copy, ignore=shutil.ignore_patterns("*.lock"))
    done = nixdrift("accept", "etc/hosts", "--reason", "under test", "--state-dir", str(copy))
    assert done.returncode == 0, done.stderr
    listed = nixdrift("remediate", "--state-dir", str(copy), "--flake", str(host.flake), "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert "skip   low      etc/hosts: accepted" in listed.stdout
    assert not any(line.startswith("revert") for line in listed.stdout.splitlines())
    assert "--apply would refuse" not in listed.stderr  # nothing eligible: nothing to refuse


@pytest_nix
def test_report_from_the_stored_daemon_report_honours_accept_and_refuses_apply(
    drifted: tuple[BuiltHost, Path, Path], tmp_path: Path
) -> None:
    host, state, config = drifted
    common = ["--flake", str(host.flake), "--host", "web1", "--root", str(host.root), "--config", str(config)]
    done = nixdrift("accept", "network/dns/*", "--reason", "resolver under test", "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    dns = sorted(line.split()[1] for line in done.stdout.splitlines())
    assert dns == ["network/dns/1.1.1.1", "network/dns/8.8.8.8"]

    out = tmp_path / "out"
    proc = nixdrift("report", *common, "--state-dir", str(state), "--out", str(out))
    assert "using the daemon's report" in proc.stderr, proc.stderr
    data = json.loads((out / "drift-report.json").read_text())
    accepted = {f["id"]: f["accepted"] for f in data["findings"]}
    assert accepted == {"network/dns/1.1.1.1": True, "network/dns/8.8.8.8": True, "etc/hosts": False}
    assert data["categories"]["network"] == "ok" and data["categories"]["etc"] == "drift"
    assert data["summary"]["low"] == 1
    prom = (out / "nixdrift.prom").read_text()
    assert 'nixdrift_findings{severity="low",category="network"} 0' in prom
    assert 'nixdrift_findings{severity="low",category="etc"} 1' in prom
    assert "nixdrift_findings_total 1" in prom
    assert proc.returncode == 1  # etc/hosts still counts

    # the script from the daemon's report of a --root scan refuses on "web1" itself
    applied = on_machine(host.root / "etc", "web1", ["bash", str(out / "remediation-script.sh"), "--apply"])
    assert applied.returncode == 3, applied.stdout + applied.stderr
    assert "(--root), not of a running machine" in applied.stderr
    assert not os.path.lexists(host.root / "etc" / "hosts")

    done = nixdrift("accept", "etc/hosts", "--reason", "under test", "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    again = nixdrift("report", *common, "--state-dir", str(state), "--out", str(tmp_path / "again"))
    assert "using the daemon's report" in again.stderr
    data = json.loads((tmp_path / "again" / "drift-report.json").read_text())
    assert all(f["accepted"] for f in data["findings"]) and sum(data["summary"].values()) == 0
    assert again.returncode == 0, again.stderr


@pytest_nix
def test_a_fresh_report_of_a_root_records_it_and_its_script_refuses(
    drifted: tuple[BuiltHost, Path, Path], tmp_path: Path
) -> None:
    host, _state, config = drifted
    out = tmp_path / "out"
    common = ["--flake", str(host.flake), "--host", "web1", "--root", str(host.root), "--config", str(config)]
    proc = nixdrift("report", *common, "--max-age", "0", "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    data = json.loads((out / "drift-report.json").read_text())
    assert data["scanned"]["root"] == str(host.root) and data["scanned"]["live"] is False
    assert data["scanned"]["machine_id"] == machine_id("web1") and data["scanned"]["host"] == "web1"
    text = (out / "remediation-script.sh").read_text()
    assert "run ln -sfn /etc/static/hosts /etc/hosts" in text
    applied = on_machine(host.root / "etc", "web1", ["bash", str(out / "remediation-script.sh"), "--apply"])
    assert applied.returncode == 3
    assert not os.path.lexists(host.root / "etc" / "hosts")
    # the very same findings, had they been read from web1's live root, would be applied there
    report = Report.from_json(data)
    assert report.scanned is not None
    relive = tmp_path / "live.sh"
    relive.write_bytes(script.encode(script.render(replace(report, scanned=replace(report.scanned, live=True)))))
    etc = tmp_path / "etc"  # a copy: the module's host stays as the daemon saw it
    shutil.copytree(host.root / "etc", etc, symlinks=True)
    applied = on_machine(etc, "web1", ["bash", str(relive), "--apply"])
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert os.readlink(etc / "hosts") == "/etc/static/hosts"
