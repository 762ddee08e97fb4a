"""systemd units as records: the entries of a unit directory, the settings of a unit file, the
state systemd reports for a loaded unit, and the services section that holds them."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

UNIT_SUFFIXES = (
    ".service", ".socket", ".timer", ".target", ".path", ".mount", ".automount", ".swap", ".slice", ".scope",
)  # fmt: skip

ETC_UNITS = "/etc/systemd/system"
TRANSIENT_DIR = "/run/systemd/transient"

MANAGED_PREFIXES = ("/nix/store/", "/etc/static/")
# Generators turn declared config (fstab, crypttab, kernel command line) into units at boot.
GENERATED_PREFIXES = ("/run/systemd/generator/", "/run/systemd/generator.early/", "/run/systemd/generator.late/")

LINK_DIR_SUFFIXES = (".wants", ".requires", ".upholds")
DROPIN_DIR_SUFFIX = ".d"


class EntryKind(enum.Enum):
    UNIT = "unit"  # a unit file, or a link to one (an alias or a linked unit)
    MASK = "mask"  # a link to /dev/null, or an empty file
    LINK = "link"  # <target>.wants/<unit> (or .requires, .upholds): an enablement
    DROPIN = "dropin"  # <unit>.d/<name>.conf


@dataclass(frozen=True, slots=True)
class UnitEntry:
    rel: str  # path relative to the unit directory, e.g. "multi-user.target.wants/sshd.service"
    kind: EntryKind
    host_path: str  # the entry's absolute host path (not resolved)
    target: str = ""  # the symlink's target as written ("" for a plain file)
    digest: str = ""  # sha256 of the resolved content, when it was read

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        """The unit a link or drop-in hangs off: "multi-user.target" for a wants link."""
        if "/" not in self.rel:
            return ""
        head = self.rel.split("/", 1)[0]
        for suffix in (*LINK_DIR_SUFFIXES, DROPIN_DIR_SUFFIX):
            if head.endswith(suffix):
                return head[: -len(suffix)]
        return head

    @property
    def unit(self) -> str:
        """The unit this entry concerns: the linked unit, the unit a drop-in changes, or itself."""
        return self.parent if self.kind is EntryKind.DROPIN else self.name


@dataclass(frozen=True, slots=True)
class UnitDir:
    host_dir: str
    entries: tuple[UnitEntry, ...] = ()

    def by_rel(self) -> dict[str, UnitEntry]:
        return {e.rel: e for e in self.entries}

    def of_kind(self, kind: EntryKind) -> tuple[UnitEntry, ...]:
        return tuple(e for e in self.entries if e.kind is kind)


# -- unit names -------------------------------------------------------------------------------


def template_of(unit: str) -> str | None:
    """ "getty@tty1.service" -> "getty@.service"; None for a unit that is no template instance."""
    match = re.fullmatch(r"([^@/]+)@([^/]+)(\.[a-z]+)", unit)
    return f"{match.group(1)}@{match.group(3)}" if match and match.group(2) else None


def is_unit_name(name: str) -> bool:
    return name.endswith(UNIT_SUFFIXES) and "/" not in name and not name.startswith(".")


@dataclass(frozen=True, slots=True)
class UnitFile:
    """The settings of a unit (fragment plus drop-ins, in order) that nixdrift compares."""

    type: str = ""
    remain_after_exit: bool = False
    conditional: bool = False  # has Condition*= or Assert*=: being inactive may be intended
    exec_start: tuple[str, ...] = ()
    listen: tuple[str, ...] = ()  # "ListenStream=0.0.0.0:80"

    @property
    def runs_once(self) -> bool:
        """A oneshot without RemainAfterExit is inactive after a successful run."""
        return self.type == "oneshot" and not self.remain_after_exit


# Who pulls a running unit in. The first four exist in every systemd nixdrift meets; the others
# (v249+) are used when the running systemd answers them.
PULLED_BY_CORE = ("WantedBy", "RequiredBy", "BoundBy", "TriggeredBy")
PULLED_BY = (*PULLED_BY_CORE, "UpheldBy", "OnFailureOf", "OnSuccessOf")

# The unit types that can be started by hand in a way worth reporting (mounts, swaps, devices,
# scopes and slices are the system's own doing).
STARTABLE_SUFFIXES = (".service", ".socket", ".timer", ".path", ".target")


@dataclass(frozen=True, slots=True)
class RuntimeUnit:
    unit: str
    load_state: str
    active_state: str
    sub_state: str
    unit_file_state: str = ""
    fragment_path: str = ""
    drop_in_paths: tuple[str, ...] = ()
    condition_result: bool | None = None  # None: unknown (not captured)
    # Who pulls it in, as (property, unit) pairs such as ("TriggeredBy", "nginx.socket"); None when
    # not captured (an inactive unit, a units.json from before these were recorded).
    pulled_by: tuple[tuple[str, str], ...] | None = None
    active_enter_monotonic: int | None = None  # µs since boot; None: not captured
    after_boot: bool | None = None  # became active after the boot transaction; None: cannot tell
    bus_name: str | None = None  # a service's BusName ("" none); None: not captured

    @property
    def is_active(self) -> bool:
        return self.active_state in ("active", "activating", "reloading")

    def pullers(self) -> tuple[str, ...]:
        """The units that pull this one in (empty when not captured)."""
        return tuple(sorted({u for _, u in self.pulled_by or ()}))

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "load_state": self.load_state,
            "active_state": self.active_state,
            "sub_state": self.sub_state,
            "unit_file_state": self.unit_file_state,
            "fragment_path": self.fragment_path,
            "drop_in_paths": list(self.drop_in_paths),
            "condition_result": self.condition_result,
            "pulled_by": _pulled_by_json(self.pulled_by),
            "active_enter_monotonic": self.active_enter_monotonic,
            "after_boot": self.after_boot,
            "bus_name": self.bus_name,
        }


def _pulled_by_json(pairs: tuple[tuple[str, str], ...] | None) -> dict[str, list[str]] | None:
    if pairs is None:
        return None
    out: dict[str, list[str]] = {p: [] for p in PULLED_BY}  # an empty list says "asked: none"
    for prop, unit in pairs:
        out.setdefault(prop, []).append(unit)
    return out


@dataclass(frozen=True, slots=True)
class ServicesLive:
    closure: UnitDir  # the declared toplevel's etc/systemd/system
    etc_managed: bool  # /etc/systemd/system is the managed link (or absent)
    writable: tuple[UnitDir, ...]  # the writable unit directories that exist
    runtime: tuple[RuntimeUnit, ...] | None  # None: systemd's state could not be read
    declared_files: Mapping[str, UnitFile] = field(default_factory=dict)  # closure unit name -> settings
    live_files: Mapping[str, UnitFile] = field(default_factory=dict)  # host path outside the closure -> settings

    def from_closure(self, host_path: str) -> bool:
        """Is this fragment or drop-in path one the closure (or a generator) provides?"""
        if host_path.startswith(MANAGED_PREFIXES + GENERATED_PREFIXES):
            return True
        return self.etc_managed and host_path.startswith(ETC_UNITS + "/")

    def closure_units(self) -> dict[str, UnitEntry]:
        """Top-level units and masks of the closure, by name."""
        return {e.rel: e for e in self.closure.entries if e.kind in (EntryKind.UNIT, EntryKind.MASK)}

    def writable_entries(self, *kinds: EntryKind) -> tuple[UnitEntry, ...]:
        return tuple(e for d in self.writable for e in d.entries if e.kind in kinds)

    def runtime_by_name(self) -> dict[str, RuntimeUnit]:
        return {u.unit: u for u in self.runtime or ()}
