"""A host exactly as its flake declares it reports no drift: a false positive is as bad as a miss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost
from nixdrift.models import Report

pytestmark = pytest.mark.nix


def assert_clean(report: Report) -> None:
    lines = [f"{f.severity.label} {f.id}: expected {f.expected!r}, actual {f.actual!r}" for f in report.findings]
    assert not report.findings, "a clean host reported drift:\n" + "\n".join(lines)
    drifted = [c.value for c, status in report.categories.items() if status == "drift"]
    assert not drifted


def test_demo_host_as_declared_has_no_drift(demo_built: BuiltHost, scan_host: Callable[..., Report]) -> None:
    report = scan_host(demo_built)
    assert_clean(report)
    assert report.host == "web1"
    assert report.generations.current == demo_built.toplevel
    assert report.generations.declared == demo_built.toplevel
    assert report.flake.dirty is False


def test_every_category_is_checked_on_a_fixture(demo_built: BuiltHost, scan_host: Callable[..., Report]) -> None:
    """The fixture holds every source a category needs, so none should be unavailable."""
    report = scan_host(demo_built)
    unavailable = {c.value: s for c, s in report.categories.items() if s.startswith("unavailable")}
    assert not unavailable


def test_nftables_host_as_declared_has_no_drift(host: HostTree, scan_host: Callable[..., Report]) -> None:
    host.with_firewall(tcp=[22, 443], udp=[51820], tcp_ranges=[(60000, 60010)], backend="nftables")
    host.with_service("sshd", listen=("0.0.0.0", 22)).with_service("wireguard", listen=("0.0.0.0", 51820), proto="udp")
    built = host.build()
    assert (built.root / ".nixdrift" / "nft.json").exists()
    assert_clean(scan_host(built))


def test_minimal_host_with_defaults_has_no_drift(host: HostTree, scan_host: Callable[..., Report]) -> None:
    """Nothing declared beyond NixOS's defaults: DHCP DNS, default firewall, root and nixbld users."""
    assert_clean(scan_host(host.build()))


def test_richer_host_has_no_drift(host: HostTree, scan_host: Callable[..., Report]) -> None:
    host.with_user("alice", groups=["wheel", "docker"], packages=["ripgrep"]).with_user("svc", system=True)
    host.with_group("deploy", gid=2000, members=["alice"]).with_mutable_users(False)
    host.with_etc_file("odd name/with space.conf", 'quote " and ${dollar}\n').with_etc_copy(
        "ssh/banner", "hi\n", "0644"
    )
    host.with_service("worker", wanted_by=[]).with_service("legacy", enable=False)
    host.with_firewall(tcp=[80], interfaces={"eth0": {"tcp": [9100]}})
    host.with_mount("/srv", device="/dev/disk/by-uuid/0a1b2c3d", fs_type="xfs").with_swap("/dev/vdc")
    host.with_mount("/var/cache/tmp", device="none", fs_type="tmpfs", options=["size=1G", "mode=1777"])
    host.with_nameservers("192.0.2.53")
    assert_clean(scan_host(host.build()))


def test_cli_check_on_a_clean_host_exits_zero(demo_built: BuiltHost, tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "nixdrift",
        "check",
        "--flake",
        str(demo_built.flake),
        "--host",
        "web1",
        "--root",
        str(demo_built.root),
        "--format",
        "json",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "NIXDRIFT_QUIET": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["findings"] == []
    assert report["host"] == "web1"
    assert set(report["categories"].values()) <= {"ok"}
