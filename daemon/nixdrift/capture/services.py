"""Services and service config: what the closure's unit directory ships, what the writable unit
directories hold, and what systemd runs (D-Bus when live, units.json from a snapshot).

One collector serves both categories (`services` and `service-config`); each comparator reads the
part it needs. On NixOS /etc/systemd/system is the managed link into /etc/static, so hand-made
state can only live in /run/systemd/{system,transient,system.control} and
/etc/systemd/system.control, unless someone replaced /etc/systemd/system with a real directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from nixdrift.capture.needs import ClosureUnits, Toplevel
from nixdrift.capture.unitfiles import read_unit_file, scan_unit_dir
from nixdrift.capture.unitfiles import with_digests as _with_digests
from nixdrift.capture.units_dbus import DBUS_ERRORS, dump_units_json, parse_units_json, read_units
from nixdrift.live.services import (
    ETC_UNITS,
    MANAGED_PREFIXES,
    TRANSIENT_DIR,
    EntryKind,
    RuntimeUnit,
    ServicesLive,
    UnitDir,
    UnitFile,
)
from nixdrift.models import Category, Section
from nixdrift.rootfs import SNAPSHOT_DIR, Root

log = logging.getLogger(__name__)

WRITABLE_DIRS = (
    ETC_UNITS,  # only when it is not the managed link into /etc/static
    "/etc/systemd/system.control",  # systemctl set-property
    "/run/systemd/system.control",  # systemctl set-property --runtime
    "/run/systemd/system",  # systemctl enable/mask --runtime
    TRANSIENT_DIR,  # systemd-run
)
SNAPSHOT_PATHS: tuple[str, ...] = WRITABLE_DIRS
BUS_SOCKET = "/run/dbus/system_bus_socket"
UNITS_JSON = "units.json"
NO_RUNTIME = "systemd's unit state cannot be read"


def closure_host_dir(declared: Toplevel) -> str | None:
    return f"{declared.toplevel}/etc/systemd/system" if declared.toplevel else None


def etc_is_managed(root: Root) -> bool:
    """True when /etc/systemd/system is the NixOS-managed link into /etc/static (or is absent)."""
    target = root.readlink(ETC_UNITS)
    if target is not None:
        return target.startswith(MANAGED_PREFIXES)
    return not root.path(ETC_UNITS).exists()


def runtime_units(root: Root) -> tuple[tuple[RuntimeUnit, ...] | None, tuple[str, ...]]:
    """systemd's unit state: live over D-Bus, else the snapshot's units.json; None (with the
    reason as the one problem) when neither can be read."""
    if root.is_live and root.path(BUS_SOCKET).exists():
        try:
            return read_units(), ()
        except DBUS_ERRORS as exc:
            log.warning("systemd over D-Bus failed: %s", exc)
            return None, (f"{NO_RUNTIME}: systemd over D-Bus failed: {type(exc).__name__}: {exc}",)
    captured = root.captured(UNITS_JSON)
    if captured.is_file():
        try:
            text = root.read_captured(UNITS_JSON).decode("utf-8", errors="surrogateescape")
        except OSError as exc:
            return None, (f"{NO_RUNTIME}: cannot read {captured}: {exc.strerror or exc}",)
        return parse_units_json(text)
    where = f"no system bus at {BUS_SOCKET} and no" if root.is_live else "the snapshot has no"
    return None, (f"{NO_RUNTIME}: {where} {SNAPSHOT_DIR}/{UNITS_JSON}",)


def _closure_paths(closure: UnitDir) -> Callable[[str], list[str]]:
    """For a closure unit: its fragment followed by its closure drop-ins, in the order systemd
    applies them (indexes built once: a host has hundreds of units)."""
    entries = closure.by_rel()
    dropins: dict[str, list[str]] = {}
    for e in sorted(closure.of_kind(EntryKind.DROPIN), key=lambda e: e.name):
        dropins.setdefault(e.parent, []).append(e.host_path)

    def paths(unit: str) -> list[str]:
        fragment = entries.get(unit)
        if fragment is None or fragment.kind is not EntryKind.UNIT:
            return []
        return [fragment.host_path, *dropins.get(unit, ())]

    return paths


def _read_files(root: Root, groups: Mapping[str, Iterable[str]]) -> tuple[dict[str, UnitFile], list[str]]:
    files: dict[str, UnitFile] = {}
    problems: list[str] = []
    for key, paths in sorted(groups.items()):
        parsed, bad = read_unit_file(root, paths)
        problems.extend(bad)
        if parsed is not None:
            files[key] = parsed
    return files, problems


def _files_to_read(declared: ClosureUnits, live: ServicesLive) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Which closure units and which live files the comparators need parsed (and no more)."""
    shipped = live.closure_units()
    wanted = {u.unit for u in declared.units.values() if u.enable and (u.wanted_by or u.required_by)}
    overriding = [e for e in live.writable_entries(EntryKind.UNIT) if e.rel in shipped]
    outside = [
        u
        for u in live.runtime or ()
        if u.fragment_path and not live.from_closure(u.fragment_path) and Path(u.fragment_path).name in shipped
    ]
    names = wanted | {e.rel for e in overriding} | {Path(u.fragment_path).name for u in outside}
    closure_paths = _closure_paths(live.closure)
    closure_groups = {n: paths for n in names if (paths := closure_paths(n))}
    live_groups = {e.host_path: [e.host_path] for e in overriding} | {
        u.fragment_path: [u.fragment_path] for u in outside
    }
    return closure_groups, live_groups


def capture(root: Root, declared: ClosureUnits) -> Section[ServicesLive]:
    root = root.for_scan()  # a thousand units resolve the same directories: looked up once per capture
    host_dir = closure_host_dir(declared)
    closure = scan_unit_dir(root, host_dir, digests=False) if host_dir else None
    if closure is None:
        return Section.missing(
            Category.SERVICES,
            f"the declared system's unit directory {host_dir or '(no toplevel)'} is not available here "
            "(build the declared system on this machine, or copy its closure)",
        )
    managed = etc_is_managed(root)
    writable = tuple(
        d for path in WRITABLE_DIRS if not (path == ETC_UNITS and managed) if (d := scan_unit_dir(root, path))
    )
    # Content digests of the closure are needed only where a writable directory has the same entry.
    closure = _with_digests(root, closure, {e.rel for d in writable for e in d.entries})
    runtime, problems = runtime_units(root)
    if runtime is None:
        # No bus (or one that did not answer) and no units.json: the files alone cannot tell a unit
        # started, stopped or failed by hand, and in the daemon every runtime finding would turn
        # "resolved" and back into "new" at the next scan. Both categories say unavailable instead.
        return Section.missing(Category.SERVICES, "; ".join(problems) or NO_RUNTIME)
    live = ServicesLive(closure, managed, writable, runtime)
    closure_groups, live_groups = _files_to_read(declared, live)
    declared_files, bad_closure = _read_files(root, closure_groups)
    live_files, bad_live = _read_files(root, live_groups)
    live = ServicesLive(closure, managed, writable, runtime, declared_files, live_files)
    return Section(Category.SERVICES, live, problems=(*problems, *bad_closure, *bad_live))


def snapshot_extra(out_dir: Path) -> list[str]:
    """Capture systemd's unit state into OUT/.nixdrift/units.json (nothing when there is no bus)."""
    if not Path(BUS_SOCKET).exists():
        return []
    try:
        units = read_units()
    except DBUS_ERRORS as exc:
        log.warning("cannot capture unit state over D-Bus: %s", exc)
        return []
    target = out_dir / SNAPSHOT_DIR / UNITS_JSON
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(dump_units_json(units), encoding="utf-8", errors="surrogateescape")
    return [UNITS_JSON]
