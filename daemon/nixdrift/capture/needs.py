"""What each collector reads of the declared state, as structural types.

A collector takes the one Protocol below that names the declared attributes it needs (`object`
when it needs none), so its signature says what it depends on; `DeclaredState` satisfies each of
them, and so does any small record a test or a tool builds with only those attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from nixdrift.declared.model import (
    DeclaredFileSystem,
    DeclaredFirewall,
    DeclaredLayout,
    DeclaredPackage,
    DeclaredSwap,
    DeclaredUnit,
    DeclaredUser,
)
from nixdrift.models import FlakeInfo


class Toplevel(Protocol):
    """The declared system's store path (generation, and every reader of its closure)."""

    @property
    def toplevel(self) -> str | None: ...


class ClosureUnits(Toplevel, Protocol):
    """The closure's units and the flake's own unit settings (services, exposure)."""

    @property
    def units(self) -> Mapping[str, DeclaredUnit]: ...


class EtcNeeds(Toplevel, Protocol):
    """The closure's etc tree and whether /etc is declared an overlay."""

    @property
    def layout(self) -> DeclaredLayout: ...


class PackageNeeds(Protocol):
    """The packages to look for: the system's and each user's."""

    @property
    def system_packages(self) -> tuple[DeclaredPackage, ...]: ...

    @property
    def users(self) -> Mapping[str, DeclaredUser]: ...


class FirewallNeeds(Protocol):
    """The declared firewall backend (which ruleset to read first)."""

    @property
    def firewall(self) -> DeclaredFirewall: ...


class MountNeeds(Protocol):
    """The declared devices, whose links are resolved."""

    @property
    def file_systems(self) -> Mapping[str, DeclaredFileSystem]: ...

    @property
    def swap_devices(self) -> tuple[DeclaredSwap, ...]: ...


class FlakeNeeds(Protocol):
    """The flake reference (the checkout to inspect)."""

    @property
    def flake(self) -> FlakeInfo: ...
