"""Scanning a fixture host in-process, and describing findings in assertion messages.

Import these as `from hostscan import scan` (not from conftest: with importlib import mode every
directory's conftest is a module named `conftest`, and the first one loaded wins)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from nixdrift import pipeline
from nixdrift.demo.planters import BuiltHost
from nixdrift.models import Category, Finding, Report
from nixdrift.pipeline import ScanOptions
from nixdrift.rootfs import Root


def scan(built: BuiltHost, cache_dir: Path | None = None) -> Report:
    opts = ScanOptions(
        flake=str(built.flake),
        host=built.name,
        root=Root.of(built.root),
        cache_dir=cache_dir if cache_dir is not None else built.tree.base / "cache",
    )
    return pipeline.scan(opts)


def describe(findings: tuple[Finding, ...] | list[Finding]) -> str:
    return "\n".join(f"  {f.severity.label:8} {f.id}: expected {f.expected!r}, actual {f.actual!r}" for f in findings)


def in_category(report: Report, category: Category) -> tuple[Finding, ...]:
    return tuple(f for f in report.findings if f.category == category)


def in_host_namespace(built: BuiltHost, *commands: str) -> None:
    """Run shell commands with the fixture host's /etc and /home bound over the machine's, and an
    empty /var (useradd would otherwise reset this machine's lastlog and faillog records), in a
    private mount namespace: the machine's own /etc, /home and /var are never touched."""
    (built.root / "home").mkdir(exist_ok=True)
    script = "\n".join(
        [
            "set -eu",
            "mount --make-rprivate /",
            f"mount --bind {built.root}/etc /etc",
            f"mount --bind {built.root}/home /home",
            "mount -t tmpfs tmpfs /var",
            *commands,
        ]
    )
    proc = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def as_live_host(root: Path, argv: list[str]) -> list[str]:
    """`argv` run on the "live host" that is the fixture `root`: its /etc and /run bound over the
    machine's in a private mount and network namespace (the machine's own are untouched)."""
    script = "\n".join(
        [
            "set -eu",
            "mount --make-rprivate /",
            f"mount --bind {root}/etc /etc",
            f"mount --bind {root}/run /run",
            'exec "$@"',
        ]
    )
    return ["unshare", "-m", "-n", "bash", "-c", script, "live", *argv]
