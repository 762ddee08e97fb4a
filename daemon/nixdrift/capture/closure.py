"""What the declared system's closure ships: its etc/ tree and its unit files.

The declared toplevel is a store path; it is read below the root, falling back to the local store
(see rootfs). When it is not realised anywhere, callers get None and say so.
"""

from __future__ import annotations

import os
from pathlib import Path

from nixdrift.capture.needs import ClosureUnits, Toplevel
from nixdrift.live.services import UNIT_SUFFIXES
from nixdrift.rootfs import Root


def toplevel_dir(root: Root, declared: Toplevel) -> Path | None:
    """The declared toplevel on this machine, or None when it was never built here."""
    if not declared.toplevel:
        return None
    path = root.real(declared.toplevel)
    return path if path.is_dir() else None


def etc_dir(root: Root, declared: Toplevel) -> Path | None:
    top = toplevel_dir(root, declared)
    return top / "etc" if top is not None and (top / "etc").is_dir() else None


def unit_dir(root: Root, declared: Toplevel) -> Path | None:
    etc = etc_dir(root, declared)
    units = etc / "systemd" / "system" if etc is not None else None
    return units if units is not None and units.is_dir() else None


def unit_names(root: Root, declared: ClosureUnits) -> frozenset[str]:
    """Every unit the closure ships (files and links alike), plus those the flake declares."""
    names = {u for u, d in declared.units.items() if d.enable}
    units = unit_dir(root, declared)
    if units is not None:
        for entry in os.scandir(units):
            if entry.name.endswith(UNIT_SUFFIXES):
                names.add(entry.name)
    return frozenset(names)
