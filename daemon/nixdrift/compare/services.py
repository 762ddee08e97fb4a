"""services: units enabled, masked, created, started or stopped outside the flake.

Declared is the closure's unit directory (units, `*.wants` links, masks) plus declared.units; live
is the writable unit directories and systemd's runtime state. Units systemd makes by itself
(scopes, slices, devices, generated mounts, user managers) are never drift.

A running unit the closure ships but nothing declared wants (a static unit, or one declared without
wantedBy) counts as started by hand only when systemd says so: it became active after the boot
transaction, no running unit pulls it in (WantedBy, RequiredBy, BoundBy, UpheldBy, OnFailureOf,
OnSuccessOf) or triggered it (TriggeredBy: a socket, timer or path), and it is no D-Bus activated
service (whose activation leaves no trace). Without those properties (an old units.json) nothing
is concluded.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from nixdrift.compare.common import finding, nix_attr, nix_str, printable, sh
from nixdrift.declared.model import DeclaredState
from nixdrift.live.services import (
    ETC_UNITS,
    GENERATED_PREFIXES,
    STARTABLE_SUFFIXES,
    TRANSIENT_DIR,
    EntryKind,
    RuntimeUnit,
    ServicesLive,
    UnitEntry,
    is_unit_name,
    template_of,
)
from nixdrift.models import Category, Finding, Kind, Section

# Units systemd, logind, container runtimes and generators create on their own.
SYSTEM_MADE_SUFFIXES = (".scope", ".slice", ".device", ".mount", ".automount", ".swap")
SYSTEM_MADE_GLOBS = (
    "user@*.service",
    "user-runtime-dir@*.service",
    "blockdev@*.target",
    "dbus-:*",  # dbus-broker's transient activation units
    "nixos-rebuild-switch-to-configuration.service",  # nixos-rebuild runs the switch as a transient unit
)
# Units the system starts on demand with no dependency to show for it: logind's gettys on a VT switch.
ON_DEMAND_GLOBS = ("autovt@*.service", "kmsconvt@*.service")
NIX_OPTIONS = {".service": "services", ".socket": "sockets", ".timer": "timers", ".path": "paths", ".target": "targets"}
RUNTIME_DIR = "/run/"


def system_made(unit: str) -> bool:
    return unit.endswith(SYSTEM_MADE_SUFFIXES) or any(fnmatch.fnmatchcase(unit, g) for g in SYSTEM_MADE_GLOBS)


def nix_unit(unit: str) -> str:
    """The NixOS option path that declares a unit: systemd.services.nginx, systemd.units."x.mount"."""
    for suffix, option in NIX_OPTIONS.items():
        if unit.endswith(suffix):
            return f"systemd.{option}.{nix_attr(unit[: -len(suffix)])}"
    return f"systemd.units.{nix_attr(unit)}"


def printable_evidence(f: Finding) -> Finding:
    """Evidence shown as one printable line per value (unit names and paths may hold odd bytes)."""
    return f.with_(evidence={k: printable(v) for k, v in f.evidence.items()})


def remove_command(path: str) -> str:
    return f"{sh('rm', '--', path)} && {sh('systemctl', 'daemon-reload')}"


@dataclass(frozen=True, slots=True)
class Known:
    """What the declaration ships, computed once per comparison."""

    closure: dict[str, UnitEntry]  # top-level units and masks of the closure
    closure_rels: frozenset[str]
    declared: frozenset[str]

    @classmethod
    def of(cls, declared: DeclaredState, live: ServicesLive) -> Known:
        enabled = frozenset(u for u, d in declared.units.items() if d.enable)
        return cls(live.closure_units(), frozenset(e.rel for e in live.closure.entries), enabled)

    def shipped(self, unit: str) -> bool:
        def known(name: str) -> bool:  # two look-ups, not a union of both sets per unit
            return name in self.closure or name in self.declared

        template = template_of(unit)
        return known(unit) or (template is not None and known(template))

    def masked(self, unit: str) -> bool:
        entry = self.closure.get(unit)
        return entry is not None and entry.kind is EntryKind.MASK


def _in_runtime_dir(entry: UnitEntry) -> bool:
    return entry.host_path.startswith(RUNTIME_DIR)


def _subject(unit: str) -> str:
    return printable(unit)


# -- enabled by hand --------------------------------------------------------------------------


def enabled_by_hand(known: Known, live: ServicesLive) -> Iterator[Finding]:
    links: dict[str, list[UnitEntry]] = {}
    for entry in live.writable_entries(EntryKind.LINK):
        if entry.rel not in known.closure_rels and not entry.host_path.startswith(TRANSIENT_DIR + "/"):
            links.setdefault(entry.unit, []).append(entry)
    # systemd's "enabled-runtime" without a link we can see counts only for a unit whose file the
    # closure does not ship: generators (a getty on the serial console) enable closure units from
    # /run/systemd/generator*, which is the system's own doing.
    for u in live.runtime or ():
        if u.unit_file_state == "enabled-runtime" and not (u.fragment_path and live.from_closure(u.fragment_path)):
            links.setdefault(u.unit, [])
    for unit, entries in sorted(links.items()):
        if system_made(unit):
            continue
        targets = sorted({e.parent for e in entries}) or ["(runtime)"]
        runtime_only = all(_in_runtime_dir(e) for e in entries)
        command = sh("systemctl", "disable", *(["--runtime"] if runtime_only else []), unit)
        wanted = " ".join(nix_str(t) for t in targets if t != "(runtime)")
        yield finding(
            rule_name="unit-enabled-by-hand",
            id=f"services/{_subject(unit)}/enabled",
            category=Category.SERVICES,
            subject=_subject(unit),
            kind=Kind.UNMANAGED,
            expected="not enabled",
            actual=f"wanted by {', '.join(printable(t) for t in targets)}" + (" (runtime)" if runtime_only else ""),
            message=f"{printable(unit)} was enabled by hand ({', '.join(printable(t) for t in targets)})",
            nix=f"{nix_unit(unit)}.wantedBy = [ {wanted} ];" if wanted else "",
            command=command,
            safe=runtime_only,
            evidence={"unit": unit, **({"path": entries[0].host_path} if entries else {})},
        )


# -- masked by hand ---------------------------------------------------------------------------


def masked_by_hand(known: Known, live: ServicesLive) -> Iterator[Finding]:
    masks: dict[str, list[str]] = {}
    for entry in live.writable_entries(EntryKind.MASK):
        if not known.masked(entry.rel):
            masks.setdefault(entry.rel, []).append(entry.host_path)
    for u in live.runtime or ():
        if u.unit_file_state in ("masked", "masked-runtime") and not known.masked(u.unit):
            masks.setdefault(u.unit, []).append(RUNTIME_DIR if u.unit_file_state == "masked-runtime" else ETC_UNITS)
    for unit, paths in sorted(masks.items()):
        runtime_only = all(p.startswith(RUNTIME_DIR) for p in paths)
        real = sorted(p for p in paths if p not in (RUNTIME_DIR, ETC_UNITS))
        yield finding(
            rule_name="unit-masked-by-hand",
            id=f"services/{_subject(unit)}/masked",
            category=Category.SERVICES,
            subject=_subject(unit),
            kind=Kind.CHANGED if known.shipped(unit) else Kind.UNMANAGED,
            expected="not masked",
            actual="masked" + (" (runtime)" if runtime_only else ""),
            message=f"{printable(unit)} was masked by hand" + (f" ({printable(real[0])})" if real else ""),
            nix=f"systemd.units.{nix_attr(unit)}.enable = false;",
            command=sh("systemctl", "unmask", *(["--runtime"] if runtime_only else []), unit),
            reason="unmasking lets the unit start again; check why it was masked first",
            evidence={"unit": unit, **({"path": real[0]} if real else {})},
        )


# -- transient units --------------------------------------------------------------------------


def _transient_made_by_hand(unit: str) -> bool:
    return is_unit_name(unit) and not system_made(unit)


def transient_units(live: ServicesLive) -> Iterator[Finding]:
    units: dict[str, str] = {}
    for entry in live.writable_entries(EntryKind.UNIT):
        if entry.host_path.startswith(TRANSIENT_DIR + "/"):
            units[entry.rel] = entry.host_path
    for u in live.runtime or ():
        if u.unit_file_state == "transient" or u.fragment_path.startswith(TRANSIENT_DIR + "/"):
            units.setdefault(u.unit, u.fragment_path or f"{TRANSIENT_DIR}/{u.unit}")
    for unit, path in sorted(units.items()):
        if not _transient_made_by_hand(unit):
            continue
        yield finding(
            rule_name="unit-transient",
            id=f"services/{_subject(unit)}/transient",
            category=Category.SERVICES,
            subject=_subject(unit),
            kind=Kind.UNMANAGED,
            expected="absent",
            actual="transient unit",
            message=f"{printable(unit)} is a transient unit created at run time (systemd-run)",
            nix=f"{nix_unit(unit)} = {{ /* declare what it runs */ }};",
            command=sh("systemctl", "stop", unit),
            reason="stopping it ends whatever it runs",
            evidence={"unit": unit, "path": path},
        )


# -- unit files the closure does not ship ---------------------------------------------------


def unmanaged_files(known: Known, live: ServicesLive) -> Iterator[Finding]:
    for entry in sorted(live.writable_entries(EntryKind.UNIT), key=lambda e: (e.rel, e.host_path)):
        unit = entry.rel
        if entry.host_path.startswith(TRANSIENT_DIR + "/") or unit in known.closure or system_made(unit):
            continue
        what = f"a link to {printable(entry.target)}" if entry.target else "a unit file"
        yield finding(
            rule_name="unit-file-unmanaged",
            id=f"services/{_subject(unit)}/file",
            category=Category.SERVICES,
            subject=_subject(unit),
            kind=Kind.UNMANAGED,
            expected="not shipped by the closure",
            actual=printable(entry.host_path),
            message=f"{printable(unit)} is {what} in {printable(entry.host_path)}, outside the closure",
            nix=f"{nix_unit(unit)} = {{ /* declare it here */ }};",
            command=remove_command(entry.host_path),
            reason="removing the unit file drops whatever it runs at the next start",
            evidence={"unit": unit, "path": entry.host_path},
        )


# -- started by hand --------------------------------------------------------------------------


def _generated(u: RuntimeUnit) -> bool:
    return u.fragment_path.startswith(GENERATED_PREFIXES)


class Origin(enum.Enum):
    """How a running unit came to run, as far as systemd's state tells."""

    PULLED = "pulled"  # a running unit wants, requires, binds, upholds or triggered it
    BOOT = "boot"  # it became active during the boot transaction
    BUS = "bus"  # a D-Bus activatable service: the bus may have started it
    UNKNOWN = "unknown"  # the properties were not captured: cannot tell
    BY_HAND = "by-hand"  # nothing running pulls it in, and it started after boot


def origin(u: RuntimeUnit, runtime: Mapping[str, RuntimeUnit]) -> Origin:
    """Pure: from the unit's recorded properties and the state of the units that pull it in."""
    if u.pulled_by is None or u.after_boot is None:
        return Origin.UNKNOWN
    if any((r := runtime.get(p)) is not None and r.is_active for p in u.pullers()):
        return Origin.PULLED
    if not u.after_boot:
        return Origin.BOOT
    if u.bus_name is None and u.unit.endswith(".service"):
        return Origin.UNKNOWN
    if u.bus_name:
        return Origin.BUS
    return Origin.BY_HAND


def _pullers_state(u: RuntimeUnit, runtime: Mapping[str, RuntimeUnit]) -> str:
    states = [f"{p} ({r.active_state if (r := runtime.get(p)) is not None else 'not loaded'})" for p in u.pullers()]
    return ", ".join(states) or "none"


def started_by_hand(declared: DeclaredState, known: Known, live: ServicesLive) -> Iterator[Finding]:
    runtime = live.runtime_by_name()
    for u in live.runtime or ():
        if not u.is_active or system_made(u.unit) or _generated(u):
            continue
        if u.unit_file_state == "transient" or u.fragment_path.startswith(TRANSIENT_DIR + "/"):
            continue  # reported as transient
        if known.shipped(u.unit):
            yield from _shipped_started_by_hand(declared, u, runtime)
            continue
        yield finding(
            rule_name="unit-started-by-hand",
            id=f"services/{_subject(u.unit)}/running",
            category=Category.SERVICES,
            subject=_subject(u.unit),
            kind=Kind.UNMANAGED,
            expected="not running",
            actual=f"{u.active_state} ({u.sub_state})",
            message=f"{printable(u.unit)} is {u.active_state} but the flake neither ships nor declares it",
            nix=f"{nix_unit(u.unit)} = {{ /* declare it here */ }};",
            command=sh("systemctl", "stop", u.unit),
            reason="stopping it ends whatever it runs",
            evidence={"unit": u.unit, **({"path": u.fragment_path} if u.fragment_path else {})},
        )


def _shipped_started_by_hand(
    declared: DeclaredState, u: RuntimeUnit, runtime: Mapping[str, RuntimeUnit]
) -> Iterator[Finding]:
    """A unit the closure ships, running although nothing declared (and running) wants it."""
    if not u.unit.endswith(STARTABLE_SUFFIXES) or any(fnmatch.fnmatchcase(u.unit, g) for g in ON_DEMAND_GLOBS):
        return
    d = declared.units.get(u.unit)
    if d is not None and _wanted_now(runtime, (*d.wanted_by, *d.required_by)):
        return  # the declaration wants it and its target runs
    if origin(u, runtime) is not Origin.BY_HAND:
        return
    how = "declared without wantedBy" if d is not None else "a static unit of the closure"
    yield finding(
        rule_name="unit-started-by-hand",
        id=f"services/{_subject(u.unit)}/running",
        category=Category.SERVICES,
        subject=_subject(u.unit),
        kind=Kind.CHANGED,
        expected="not running (nothing declared wants it)",
        actual=f"{u.active_state} ({u.sub_state}), started after boot",
        message=(
            f"{printable(u.unit)} was started by hand: it runs ({how}), but no running unit wants, requires "
            "or triggered it"
        ),
        nix=f'{nix_unit(u.unit)}.wantedBy = [ "multi-user.target" ];',
        command=sh("systemctl", "stop", u.unit),
        reason="stopping it ends whatever it runs",
        evidence={
            "unit": u.unit,
            "pulled_by": _pullers_state(u, runtime),
            **({"path": u.fragment_path} if u.fragment_path else {}),
        },
    )


# -- declared, wanted units that are not running ---------------------------------------------


def _wanted_now(live: Mapping[str, RuntimeUnit], targets: Iterable[str]) -> list[str]:
    return sorted(t for t in targets if (r := live.get(t)) is not None and r.is_active)


def _stopped_state(live: ServicesLive, unit: str, runtime: RuntimeUnit) -> str | None:
    """Why this running-wanted unit counts as stopped, or None when its state is as intended."""
    if runtime.active_state == "failed":
        return "failed"
    if runtime.active_state != "inactive":
        return None
    settings = live.declared_files.get(unit)
    if settings is None or settings.runs_once:
        return None  # unknown Type=, or a oneshot that finished: inactive is its normal state
    if runtime.condition_result is False or (runtime.condition_result is None and settings.conditional):
        return None  # skipped by a Condition*=, as declared
    return "inactive"


def stopped(declared: DeclaredState, known: Known, live: ServicesLive) -> Iterator[Finding]:
    runtime = live.runtime_by_name()
    for unit, d in declared.units.items():
        r = runtime.get(unit)
        if not d.enable or r is None or r.load_state == "masked" or not is_unit_name(unit):
            continue
        if template_of(unit) is not None or "@." in unit or unit.endswith(SYSTEM_MADE_SUFFIXES):
            continue
        wanting = (*d.wanted_by, *d.required_by)
        state = _stopped_state(live, unit, r)
        targets = sorted(wanting) if state == "failed" else _wanted_now(runtime, wanting)
        if state is None or not targets:
            continue  # a failure always counts; being inactive only while a wanting target is active
        failed = state == "failed"
        yield finding(
            rule_name="unit-stopped",
            id=f"services/{_subject(unit)}/stopped",
            category=Category.SERVICES,
            subject=_subject(unit),
            kind=Kind.MISSING,
            expected="active",
            actual=f"{state} ({r.sub_state})",
            message=f"{printable(unit)} is {state} although {', '.join(targets)} wants it",
            nix=f"{nix_unit(unit)}.wantedBy = lib.mkForce [ ];",
            command=sh("systemctl", "restart" if failed else "start", unit),
            safe=not failed,
            reason="it failed: read its journal before restarting" if failed else "",
            evidence={"unit": unit, "wanted_by": ", ".join(targets)},
        )


def compare(declared: DeclaredState, live: Section[ServicesLive]) -> tuple[Finding, ...]:
    data = live.data
    if data is None:
        return ()
    known = Known.of(declared, data)
    found: dict[str, Finding] = {}
    for f in (
        *enabled_by_hand(known, data),
        *masked_by_hand(known, data),
        *transient_units(data),
        *unmanaged_files(known, data),
        *started_by_hand(declared, known, data),
        *stopped(declared, known, data),
    ):
        found.setdefault(f.id, f)
    return tuple(printable_evidence(found[k]) for k in sorted(found))
