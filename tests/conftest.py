"""Shared fixtures: fixture NixOS hosts built with real nix, and a scan helper."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from hostscan import scan
from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import demo_host
from nixdrift.models import Report

# Parsers are proven on arbitrary input, not timed: a busy 2-core CI machine must not turn a slow
# example into a failure (timing belongs in benchmarks/).
settings.register_profile("nixdrift", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("nixdrift")

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


@pytest.fixture
def scan_host() -> Callable[..., Report]:
    return scan
