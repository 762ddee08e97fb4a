"""service-config: the unit files and drop-ins systemd loads that the closure did not build.

A fragment outside the closure (a unit file in /run/systemd/system, or in an unmanaged
/etc/systemd/system, overriding a closure unit) is unit-changed, naming the ExecStart= and
Listen*= lines that differ; a drop-in the closure does not ship is dropin-unmanaged. Both views
(the writable directories, systemd's FragmentPath and DropInPaths) report under the same ids.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterator

from nixdrift.compare.common import finding, printable
from nixdrift.compare.services import nix_unit, printable_evidence, remove_command
from nixdrift.declared.model import DeclaredState
from nixdrift.live.services import TRANSIENT_DIR, EntryKind, ServicesLive, UnitEntry, UnitFile
from nixdrift.models import Category, Finding, Kind, Section
from nixdrift.redact import value_digest

# Programs set properties on the scopes and session slices they create (runc, logind): not drift.
DROPIN_EXEMPT_GLOBS = ("*.scope", "user-*.slice")
MAX_LINE = 160


def _transient(path: str) -> bool:
    return path.startswith(TRANSIENT_DIR + "/")


def _lines(values: tuple[str, ...]) -> str:
    if not values:
        return "(none)"
    return " | ".join(printable(v if len(v) <= MAX_LINE else v[:MAX_LINE] + "…") for v in values)


def _digests(values: tuple[str, ...]) -> tuple[str, ...]:
    """Each value by its digest: a snapshot holds ExecStart= only so (see snapshot.reduce_unit_file)."""
    return tuple(value_digest(v) for v in values)


def _digest(values: tuple[str, ...]) -> str:
    if not values:
        return "(none)"
    return "sha256 " + hashlib.sha256("\n".join(_digests(values)).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def describe_difference(declared: UnitFile | None, live: UnitFile | None) -> str:
    """What differs between the closure's unit and the loaded one, as one line ("" when unknown or
    equal). Listen addresses are shown; ExecStart= only by digest: command lines carry tokens and
    passwords often enough that their text never goes into a report."""
    if declared is None or live is None:
        return ""
    parts = []
    if _digests(declared.exec_start) != _digests(live.exec_start):
        parts.append(f"ExecStart differs: {_digest(declared.exec_start)} -> {_digest(live.exec_start)}")
    if declared.listen != live.listen:
        parts.append(f"Listen: {_lines(declared.listen)} -> {_lines(live.listen)}")
    return "; ".join(parts)


def _changed(live: ServicesLive, unit: str, path: str) -> Finding:
    closure_entry = live.closure_units().get(unit)
    difference = describe_difference(live.declared_files.get(unit), live.live_files.get(path))
    message = f"{printable(unit)} is loaded from {printable(path)}, which overrides the closure's unit"
    return finding(
        rule_name="unit-changed",
        id=f"service-config/{printable(unit)}/fragment",
        category=Category.SERVICE_CONFIG,
        subject=printable(unit),
        kind=Kind.CHANGED,
        expected="the closure's unit file",
        actual=printable(path),
        message=message + (f" ({difference})" if difference else ""),
        nix=f"{nix_unit(unit)} = {{ /* the settings of {printable(path)} */ }};",
        command=remove_command(path),
        reason="removing the override changes what the unit runs at its next start",
        evidence={"unit": unit, "path": path, **({"closure": closure_entry.host_path} if closure_entry else {})},
    )


def fragment_changes(live: ServicesLive) -> Iterator[Finding]:
    shipped = live.closure_units()
    writable = live.writable_entries(EntryKind.UNIT)
    for entry in writable:
        ours = shipped.get(entry.rel)
        if ours is None or _transient(entry.host_path):
            continue  # a unit the closure does not ship is the services category's business
        if ours.kind is EntryKind.UNIT and ours.digest and ours.digest == entry.digest:
            continue  # the same content as the closure's (an unmanaged /etc holding the same links)
        yield _changed(live, entry.rel, entry.host_path)
    seen = {e.host_path for e in writable}
    for u in live.runtime or ():
        path = u.fragment_path
        if not path or u.load_state != "loaded" or path in seen or _transient(path) or live.from_closure(path):
            continue
        name = path.rsplit("/", 1)[-1]  # the template's name for an instance
        if name in shipped:
            yield _changed(live, name, path)


def _dropin(unit: str, name: str, path: str) -> Finding:
    return finding(
        rule_name="dropin-unmanaged",
        id=f"service-config/{printable(unit)}/dropin/{printable(name)}",
        category=Category.SERVICE_CONFIG,
        subject=printable(unit),
        kind=Kind.UNMANAGED,
        expected="no such drop-in",
        actual=printable(path),
        message=f"{printable(unit)} is changed by the drop-in {printable(path)}, which the closure does not ship",
        nix=f"{nix_unit(unit)} = {{ /* the settings of {printable(name)} */ }};",
        command=remove_command(path),
        reason="removing the drop-in changes the unit at its next start",
        evidence={"unit": unit, "path": path},
    )


def _exempt(unit: str) -> bool:
    return any(fnmatch.fnmatchcase(unit, g) for g in DROPIN_EXEMPT_GLOBS)


def _same_as_closure(closure: dict[str, UnitEntry], entry: UnitEntry) -> bool:
    ours = closure.get(entry.rel)
    return ours is not None and bool(ours.digest) and ours.digest == entry.digest


def dropin_changes(live: ServicesLive) -> Iterator[Finding]:
    closure = live.closure.by_rel()
    writable = live.writable_entries(EntryKind.DROPIN)
    for entry in writable:
        if not _transient(entry.host_path) and not _same_as_closure(closure, entry) and not _exempt(entry.unit):
            yield _dropin(entry.unit, entry.name, entry.host_path)
    seen = {e.host_path for e in writable}
    for u in live.runtime or ():
        for path in u.drop_in_paths:
            if path in seen or _transient(path) or live.from_closure(path):
                continue
            directory, _, name = path.rpartition("/")
            parent = directory.rsplit("/", 1)[-1]
            unit = parent[:-2] if parent.endswith(".d") else u.unit
            if not _exempt(unit):
                yield _dropin(unit, name, path)


def compare(declared: DeclaredState, live: Section[ServicesLive]) -> tuple[Finding, ...]:
    data = live.data
    if data is None:
        return ()
    found: dict[str, Finding] = {}
    for f in (*fragment_changes(data), *dropin_changes(data)):
        found.setdefault(f.id, f)
    return tuple(printable_evidence(found[k]) for k in sorted(found))
