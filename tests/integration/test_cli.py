"""The command line on bad input: clear messages and exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nixdrift.demo.hostbuilder import HostTree, init_repo
from nixdrift.demo.planters import BuiltHost

pytestmark = pytest.mark.nix


def nixdrift(*args: str, path: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NIXDRIFT_QUIET": "1"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "nixdrift", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def check(built: BuiltHost, *extra: str) -> subprocess.CompletedProcess[str]:
    cache = str(built.tree.base / "cache")
    return nixdrift(
        "check",
        "--flake",
        str(built.flake),
        "--host",
        built.name,
        "--root",
        str(built.root),
        "--cache-dir",
        cache,
        *extra,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_broken_flake_shows_nix_error_and_exits_2(host: HostTree, tmp_path: Path) -> None:
    built = host.build()
    (built.flake / "host.nix").write_text("{ pkgs, ... }: { networking.hostName = ; }\n")
    proc = check(built)
    assert_clean_failure(proc)
    assert "error:" in proc.stderr and "syntax error" in proc.stderr


def test_unknown_host_lists_the_present_ones(host: HostTree) -> None:
    built = host.build()
    proc = nixdrift(
        "check",
        "--flake",
        str(built.flake),
        "--host",
        "nosuch",
        "--root",
        str(built.root),
        "--cache-dir",
        str(built.tree.base / "cache"),
    )
    assert_clean_failure(proc)
    assert "nosuch" in proc.stderr and "web1" in proc.stderr


def test_nix_missing_from_path_exits_2(host: HostTree, tmp_path: Path) -> None:
    built = host.build()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git",):  # everything but nix
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    proc = nixdrift(
        "check",
        "--flake",
        str(built.flake),
        "--host",
        "web1",
        "--root",
        str(built.root),
        "--no-cache",
        path=str(bin_dir),
    )
    assert_clean_failure(proc)
    assert "nix" in proc.stderr and "not installed" in proc.stderr


def test_malformed_config_names_line_and_key(host: HostTree, tmp_path: Path) -> None:
    built = host.build()
    config = tmp_path / "config.yaml"
    config.write_text("flake: /etc/nixos\nalertThreshold: high\nexeptions:\n  - 'etc/motd'\n")
    proc = check(built, "--config", str(config))
    assert_clean_failure(proc)
    assert f"{config}:3" in proc.stderr and "exeptions" in proc.stderr and "exceptions" in proc.stderr


def test_odd_bytes_and_unreadable_files_do_not_crash(host: HostTree) -> None:
    built = host.with_etc_file("motd", "hi\n").build()
    etc = os.fsencode(built.root / "etc")
    with open(os.path.join(etc, b"odd-\xff\xfe\nname.conf"), "wb") as handle:
        handle.write(b"\xff\x00binary\n")
    os.symlink(b"loop-b", os.path.join(etc, b"loop-a"))
    os.symlink(b"loop-a", os.path.join(etc, b"loop-b"))
    os.mkfifo(os.path.join(etc, b"a-fifo"))
    (built.root / "etc" / "unreadable.conf").write_text("TOPSECRET-4242\n")
    os.chmod(built.root / "etc" / "unreadable.conf", 0)
    with (built.root / "etc" / "passwd").open("ab") as handle:
        handle.write(b"bad\xffline-without-fields\n")
    proc = check(built, "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    ids = [f["id"] for f in report["findings"]]
    assert any("\\xff\\xfe" in i for i in ids), ids  # the odd name, escaped and on one line
    assert all("\n" not in i for i in ids)
    assert "TOPSECRET-4242" not in proc.stdout


def test_check_json_exit_1_on_drift(host: HostTree) -> None:
    built = host.with_etc_file("motd", "hi\n").build()
    built.add_etc_file("sudoers.d/99-x", "x ALL=(ALL) ALL\n", 0o440)
    proc = check(built, "--format", "json", "--threshold", "medium")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["categories"]["etc"] == "drift"
    assert report["summary"]["high"] >= 1


def test_demo_reports_drift_and_keeps_the_host(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    out = tmp_path / "reports"
    proc = nixdrift("demo", "--format", "json", "--keep", str(keep), "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    drifted = [c for c, s in report["categories"].items() if s == "drift"]
    assert len(drifted) >= 8, report["categories"]
    assert "planting" in proc.stderr
    assert (keep / "root" / "etc" / "nixos" / "flake.nix").exists()
    assert (out / "drift-report.json").exists()
    again = nixdrift(
        "check",
        "--flake",
        str(keep / "root" / "etc" / "nixos"),
        "--host",
        "web1",
        "--root",
        str(keep / "root"),
        "--format",
        "json",
        "--cache-dir",
        str(keep / "cache"),
    )
    assert again.returncode == 1, again.stderr
    # the kept host is the one the demo checked: the same findings (the times of the two scans aside)
    assert untimed(json.loads(again.stdout)["findings"]) == untimed(report["findings"])


def untimed(findings: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in f.items() if k not in ("first_seen", "last_seen")} for f in findings]


def test_demo_refuses_a_non_empty_keep_dir(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("mine\n")
    proc = nixdrift("demo", "--keep", str(tmp_path))
    assert_clean_failure(proc)
    assert "not empty" in proc.stderr


def test_repo_without_commits_is_not_a_crash(host: HostTree, tmp_path: Path) -> None:
    flake = tmp_path / "bare-flake"
    host.write_flake(flake)
    init_repo(flake, None)
    built = host.build()
    proc = check(built, "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
