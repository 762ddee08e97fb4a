"""Shared fixtures: fixture NixOS hosts built with real nix, and a scan helper."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from nixdrift import pipeline
from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import demo_host
from nixdrift.models import Category, Finding, Report
from nixdrift.pipeline import ScanOptions
from nixdrift.rootfs import Root

HAVE_NIX = shutil.which("nix") is not None and shutil.which("nix-build") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAVE_NIX:
        return
    skip = pytest.mark.skip(reason="needs a real nix binary (nix, nix-build) on PATH")
    for item in items:
        if "nix" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def host(tmp_path: Path) -> HostTree:
    """An empty declaration of host web1; add `with_*` lines, then `.build()`."""
    return HostTree(tmp_path / "host", name="web1")


@pytest.fixture
def demo_built(tmp_path: Path) -> BuiltHost:
    """The demo host (users, packages, services, /etc files, firewall, a mount, DNS), clean."""
    return demo_host(tmp_path / "demo").build()


def scan(built: BuiltHost, cache_dir: Path | None = None) -> Report:
    opts = ScanOptions(
        flake=str(built.flake),
        host=built.name,
        root=Root.of(built.root),
        cache_dir=cache_dir if cache_dir is not None else built.tree.base / "cache",
    )
    return pipeline.scan(opts)


@pytest.fixture
def scan_host() -> Callable[..., Report]:
    return scan


def describe(findings: tuple[Finding, ...] | list[Finding]) -> str:
    return "\n".join(f"  {f.severity.label:8} {f.id}: expected {f.expected!r}, actual {f.actual!r}" for f in findings)


def in_category(report: Report, category: Category) -> tuple[Finding, ...]:
    return tuple(f for f in report.findings if f.category == category)
