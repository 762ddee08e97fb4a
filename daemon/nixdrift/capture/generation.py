"""The running, booted and profiled system generations.

`/run/current-system` is the system that runs, `/run/booted-system` the one that booted and
`/nix/var/nix/profiles/system` (-> `system-N-link` -> store path) the one the next boot starts.
All three are symlinks resolved below the root, so a fixture tree or a snapshot works alike.
"""

from __future__ import annotations

import os
import re

from nixdrift.capture.needs import Toplevel
from nixdrift.live.generation import BOOTED, CURRENT, PROFILES, SYSTEM_PROFILE, LiveGeneration, SystemGeneration
from nixdrift.live.packages import store_path_of
from nixdrift.models import Category, Section
from nixdrift.rootfs import Root

# what nixos-rebuild compares to decide that a reboot is needed (the rest changes on switch)
BOOT_PARTS = ("kernel", "initrd", "kernel-modules")

SNAPSHOT_PATHS: tuple[str, ...] = (CURRENT, BOOTED, PROFILES)

_GEN_LINK = re.compile(r"^system-([0-9]+)-link$")


def _target(root: Root, path: str) -> str | None:
    """The store path a system link points at, or None when it is absent or not a store path."""
    if not os.path.lexists(root.path(path)):
        return None
    return store_path_of(root.resolve(path))


def _boot_parts(root: Root, toplevel: str | None) -> tuple[str, ...] | None:
    if toplevel is None:
        return None
    parts: list[str] = []
    for name in BOOT_PARTS:
        link = f"{toplevel}/{name}"
        if root.readlink(link) is None:
            return None  # the closure is not here (or not a NixOS toplevel): compare toplevels instead
        parts.append(root.resolve(link))
    return tuple(parts)


def _generations(root: Root) -> tuple[SystemGeneration, ...]:
    try:
        entries = os.listdir(root.path(PROFILES))
    except OSError:
        return ()
    found: list[SystemGeneration] = []
    for name in entries:
        if match := _GEN_LINK.match(name):
            link = f"{PROFILES}/{name}"
            found.append(SystemGeneration(int(match.group(1)), link, store_path_of(root.resolve(link))))
    return tuple(sorted(found, key=lambda g: g.number))


def _profile_number(root: Root) -> int | None:
    target = root.readlink(SYSTEM_PROFILE)
    match = _GEN_LINK.match(os.path.basename(target)) if target else None
    return int(match.group(1)) if match else None


def capture(root: Root, declared: Toplevel) -> Section[LiveGeneration]:
    if not declared.toplevel:
        reason = "the flake declares no system.build.toplevel: nothing to compare the running system with"
        return Section.missing(Category.GENERATION, reason)
    try:
        live = _live(root, declared.toplevel)
    except OSError as exc:  # a link loop, an unreadable link: one line, not a verdict
        return Section.missing(Category.GENERATION, f"a system generation link cannot be read: {exc}")
    if live is None:
        reason = f"{CURRENT} is not a link into the store: not a running NixOS system"
        return Section.missing(Category.GENERATION, reason)
    return Section(Category.GENERATION, live)


def _live(root: Root, toplevel: str) -> LiveGeneration | None:
    current = _target(root, CURRENT)
    if current is None:
        return None
    booted = _target(root, BOOTED)
    return LiveGeneration(
        current=current,
        booted=booted,
        profile=_target(root, SYSTEM_PROFILE),
        profile_number=_profile_number(root),
        current_boot=_boot_parts(root, current),
        booted_boot=_boot_parts(root, booted),
        generations=_generations(root),
        declared_built=root.real(toplevel).exists(),
    )
