"""Fail closed, through the command line: what could not be read or judged is `unavailable` in every
format and never exits 0; a generation link loop is one line; a root that is not NixOS is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost
from nixdrift.nixos_root import is_nixos
from nixdrift.rootfs import Root

pytestmark = pytest.mark.nix

NO_UNITS = "unavailable: systemd's unit state cannot be read: the snapshot has no .nixdrift/units.json"
# the test seam: the category table's comparator, replaced in the process that runs the CLI
RAISING = """
import dataclasses, sys
from nixdrift.categories import TABLE
from nixdrift.models import Category

def boom(declared, section):
    raise RuntimeError("boom in the network comparator")

TABLE[Category.NETWORK] = dataclasses.replace(TABLE[Category.NETWORK], comparator=boom)
from nixdrift.cli import main
sys.exit(main(sys.argv[1:]))
"""


def nixdrift(*args: str, driver: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NIXDRIFT_QUIET": "1"}
    head = ["-c", driver] if driver else ["-m", "nixdrift"]
    return subprocess.run([sys.executable, *head, *args], capture_output=True, text=True, timeout=600, env=env)


def scan_args(built: BuiltHost, root: Path, *extra: str) -> list[str]:
    cache = str(built.tree.base / "cache")
    return ["--flake", str(built.flake), "--host", built.name, "--root", str(root), "--cache-dir", cache, *extra]


def check(built: BuiltHost, root: Path, *extra: str, driver: str | None = None) -> subprocess.CompletedProcess[str]:
    return nixdrift("check", *scan_args(built, root, *extra), driver=driver)


def category_rows(text: str) -> dict[str, str]:
    """The `categories:` block of the text report: name -> status."""
    block = text.split("\ncategories:\n", 1)[1].split("\n\n", 1)[0]
    return dict(line.strip().split(None, 1) for line in block.splitlines())


def prom_samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def test_an_empty_root_says_services_unavailable_in_every_format(host: HostTree, tmp_path: Path) -> None:
    built = host.build()  # the declared closure is in the local store; the root holds nothing
    empty = tmp_path / "empty"
    empty.mkdir()
    as_json = check(built, empty, "--not-nixos-ok", "--format", "json")
    assert as_json.returncode == 2, as_json.stderr
    no_traceback(as_json)
    categories = json.loads(as_json.stdout)["categories"]
    assert categories["services"] == categories["service-config"] == NO_UNITS
    assert "nixdrift: not scanned:" in as_json.stderr and "services" in as_json.stderr

    text = check(built, empty, "--not-nixos-ok")
    assert text.returncode == 2
    rows = category_rows(text.stdout)
    assert rows["services"] == rows["service-config"] == NO_UNITS

    markdown = check(built, empty, "--not-nixos-ok", "--format", "markdown")
    assert markdown.returncode == 2
    assert markdown.stdout.count("systemd's unit state cannot be read") >= 2

    policy = check(built, empty, "--not-nixos-ok", "--format", "policyreport")
    assert policy.returncode == 2
    summary = yaml.safe_load(policy.stdout)["summary"]
    unavailable = [c for c, s in categories.items() if s.startswith("unavailable")]
    assert {"services", "service-config"} <= set(unavailable)
    assert summary["error"] == len(unavailable)
    assert summary["pass"] == len(categories) - len(unavailable)

    out = tmp_path / "reports"
    report = nixdrift("report", *scan_args(built, empty, "--not-nixos-ok", "--out", str(out), "--max-age", "0"))
    assert report.returncode == 2, report.stderr
    assert "nixdrift: not scanned:" in report.stderr and "exit 2, not clean" in report.stderr
    samples = prom_samples((out / "nixdrift.prom").read_text())
    assert samples['nixdrift_category_unavailable{category="services"}'] == 1
    assert samples['nixdrift_category_unavailable{category="service-config"}'] == 1
    assert json.loads((out / "drift-metrics.json").read_text())["categories"]["services"] == NO_UNITS


def test_a_clean_host_with_its_units_json_is_not_unavailable(host: HostTree) -> None:
    built = host.build()
    proc = check(built, built.root, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    categories = json.loads(proc.stdout)["categories"]
    assert categories["services"] == categories["service-config"] == "ok"
    (built.root / ".nixdrift" / "units.json").unlink()  # the same host without systemd's view
    again = check(built, built.root, "--format", "json")
    assert again.returncode == 2
    assert json.loads(again.stdout)["categories"]["services"] == NO_UNITS


def test_a_comparator_that_raises_is_unavailable_and_the_scan_goes_on(host: HostTree) -> None:
    built = host.with_etc_file("motd", "hi\n").build()
    proc = check(built, built.root, "--format", "json", driver=RAISING)
    assert proc.returncode == 2, proc.stdout + proc.stderr  # nothing else drifted, network unjudged
    no_traceback(proc)
    report = json.loads(proc.stdout)
    reason = "network comparator failed: RuntimeError: boom in the network comparator"
    assert report["categories"]["network"] == f"unavailable: {reason}"
    assert "network: comparator failed: RuntimeError: boom in the network comparator" in report["problems"]
    assert {c for c, s in report["categories"].items() if s != "ok"} == {"network"}
    assert "nixdrift: ERROR: network: comparator failed: RuntimeError: boom in the network comparator" in proc.stderr

    built.add_etc_file("sudoers.d/99-x", "x ALL=(ALL) ALL\n", 0o440)  # drift elsewhere: exit 1 anyway
    drifted = check(built, built.root, "--format", "json", driver=RAISING)
    assert drifted.returncode == 1, drifted.stderr
    report = json.loads(drifted.stdout)
    assert report["categories"]["etc"] == "drift"
    assert report["categories"]["network"] == f"unavailable: {reason}"


def _loop(root: Path, host_path: str) -> None:
    link = root / host_path.lstrip("/")
    link.unlink()
    subprocess.run(["ln", "-s", host_path, str(link)], check=True)


def test_a_current_system_link_loop_is_one_line_and_the_rest_goes_on(host: HostTree, tmp_path: Path) -> None:
    built = host.build()
    _loop(built.root, "/run/current-system")
    proc = check(built, built.root, "--format", "json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    report = json.loads(proc.stdout)
    loop = "too many levels of symbolic links: /run/current-system"
    assert report["categories"]["generation"] == f"unavailable: a system generation link cannot be read: {loop}"
    assert report["generations"]["current"] is None
    assert report["generations"]["booted"] == report["generations"]["declared"]
    for category in ("users", "etc", "network", "firewall", "services", "mounts"):
        assert report["categories"][category] == "ok", report["categories"]
    # every other unavailable category says why in one line, and so does stderr
    unavailable = {c: s for c, s in report["categories"].items() if s.startswith("unavailable")}
    assert all(loop in s for s in unavailable.values()), unavailable
    assert all(line.startswith("nixdrift: ") for line in proc.stderr.splitlines()), proc.stderr

    out = tmp_path / "reports"
    written = nixdrift("report", *scan_args(built, built.root, "--out", str(out), "--max-age", "0"))
    assert written.returncode == 2, written.stderr
    samples = prom_samples((out / "nixdrift.prom").read_text())
    assert samples['nixdrift_category_unavailable{category="generation"}'] == 1
    assert samples['nixdrift_category_unavailable{category="users"}'] == 0


def debian_root(base: Path) -> Path:
    """What `nixdrift snapshot` of a Debian machine held: plain files, no NixOS marker."""
    root = base / "debian"
    files = {
        "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n',
        "etc/debian_version": "12.7\n",
        "etc/hostname": "web1\n",
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n",
        "etc/group": "root:x:0:\n",
        "etc/pam.d/chfn": "auth sufficient pam_rootok.so\n",
        "var/lib/dpkg/status": "Package: base-files\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_root_that_is_not_nixos_is_refused(host: HostTree, tmp_path: Path) -> None:
    built = host.build()
    debian = debian_root(tmp_path)
    expected = f"nixdrift: error: {debian} is not a NixOS system"
    for command in (["check", "--format", "json"], ["report", "--out", str(tmp_path / "reports")]):
        proc = nixdrift(command[0], *scan_args(built, debian, *command[1:]))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stdout == ""
        assert proc.stderr.startswith(expected) and "--not-nixos-ok" in proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not (tmp_path / "reports").exists()
    # asked for: compared anyway (and it is drift)
    forced = check(built, debian, "--format", "json", "--not-nixos-ok")
    assert forced.returncode == 1, forced.stderr
    assert "etc/pam.d/chfn" in {f["id"] for f in json.loads(forced.stdout)["findings"]}


@pytest.mark.skipif(is_nixos(Root()), reason="this machine is NixOS")
def test_snapshot_of_this_debian_machine_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "snap"
    proc = nixdrift("snapshot", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("nixdrift: error: this machine is not a NixOS system")
    assert len(proc.stderr.splitlines()) == 1
    assert not out.exists()


@pytest.mark.skipif(is_nixos(Root()) or shutil.which("unshare") is None, reason="needs a non-NixOS machine")
def test_snapshot_warns_about_every_source_it_could_not_capture(tmp_path: Path) -> None:
    """Forced on this machine (no system bus), in a network namespace of its own: systemd's unit
    state is missing, and the warning says what a check of the snapshot will lack."""
    out = tmp_path / "snap"
    argv = [sys.executable, "-m", "nixdrift", "snapshot", "--out", str(out), "--host", "web1", "--not-nixos-ok"]
    env = {**os.environ, "NIXDRIFT_QUIET": "1"}
    proc = subprocess.run(["unshare", "-n", *argv], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("nixdrift: warning: not captured:")]
    captured = set(json.loads((out / ".nixdrift" / "snapshot.json").read_text())["sources"])
    assert "units.json" not in captured
    assert any("systemd's unit state: services and service-config" in w for w in warnings), proc.stderr
    # one warning for each missing source, none for a captured one
    expected = 1 + ("listening.json" not in captured) + (not captured & {"nft.json", "iptables-save.txt"})
    assert len(warnings) == expected, proc.stderr


def test_the_live_root_without_a_system_bus_says_services_unavailable(
    host: HostTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container or a host whose bus is gone: the declared closure is here, systemd's view is not."""
    from nixdrift.capture import services
    from nixdrift.declared.model import DeclaredState
    from nixdrift.models import FlakeInfo

    built = host.build()
    bus = tmp_path / "no-bus" / "system_bus_socket"
    monkeypatch.setattr(services, "BUS_SOCKET", str(bus))
    assert not Root().captured("units.json").exists()
    declared = DeclaredState.from_json(built.name, FlakeInfo(str(built.flake)), {"toplevel": built.toplevel})
    section = services.capture(Root(), declared)
    assert section.data is None
    assert (
        section.unavailable
        == f"systemd's unit state cannot be read: no system bus at {bus} and no .nixdrift/units.json"
    )
