"""Fixture NixOS hosts (tests, the demo, benchmarks) and the bundled demo scenario."""

from __future__ import annotations

from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost

__all__ = ["BuiltHost", "HostTree"]
