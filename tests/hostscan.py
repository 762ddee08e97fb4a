"""Scanning a fixture host in-process, and describing findings in assertion messages.

Import these as `from hostscan import scan` (not from conftest: with importlib import mode every
directory's conftest is a module named `conftest`, and the first one loaded wins)."""

from __future__ import annotations

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
