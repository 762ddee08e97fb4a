"""/etc against the declared closure's etc tree (see capture.etc for how entries are classified).

- a link into /etc/static where the closure has the entry, or a copy listed in /etc/.clean whose
  digest, mode and owner match the closure's: managed, no finding;
- a managed link pointing elsewhere or replaced by a file or directory, a managed copy that
  differs: etc-changed;
- anything the closure does not ship and the allowlist does not name: etc-unmanaged;
- an entry the closure ships (or `environment.etc` declares) that is absent: etc-missing;
- the same under sudoers, ssh, pam.d, security or polkit-1: etc-sensitive.

Findings carry short digests, modes and owners; never contents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from nixdrift import layout
from nixdrift.compare.common import finding, nix_str, printable
from nixdrift.compare.common import sh as command
from nixdrift.declared.model import DeclaredEtc, DeclaredState
from nixdrift.live.etc import ClosureEntry, EntryType, EtcEntry, EtcLive, UpperKind, allowed, sensitive, skipped
from nixdrift.models import Category, Finding, Kind, Section

E = Category.ETC
_PLAIN = re.compile(r"[A-Za-z0-9._+-]+")


def compare(declared: DeclaredState, live: Section[EtcLive]) -> tuple[Finding, ...]:
    return tuple(iter_compare(declared, live))


def iter_compare(declared: DeclaredState, live: Section[EtcLive]) -> Iterator[Finding]:
    """`compare`, one finding at a time (the daemon records a storm's /etc without holding it)."""
    data = live.data
    if data is None:
        return
    yield from _layout(declared, data)
    yield from _present(declared, data)
    yield from _missing(declared, data)


def compare_paths(
    declared: DeclaredState, live: Section[EtcLive], inside: Callable[[str], bool]
) -> tuple[Finding, ...]:
    """The findings of the entries `inside` holds (paths relative to /etc) only, the same as
    `compare` gives for them: a realtime event's share of the category (live captured by
    capture.etc_paths). The layout's findings (mounts, the metadata image) are no entry's: only a
    whole capture says them."""
    data = live.data
    if data is None:
        return ()
    return (*_present(declared, data, inside), *_missing(declared, data, inside))


def owned(f: Finding, inside: Callable[[str], bool]) -> bool:
    """Is this one of the findings `compare_paths` decides for `inside` (which takes paths as
    printable() shows them)? An entry's finding has the id `etc/<rel>` and the path `/etc/<rel>`."""
    path = f.path
    return f.category is E and path.startswith("/etc/") and f.id == path[1:] and inside(path[5:])


def _on_overlay(data: EtcLive) -> bool:
    """/etc is an overlay here: managed links point straight at the store, nothing is in .clean."""
    mount = data.overlay.mount if data.overlay is not None else None
    return mount is not None and mount.fs_type == "overlay"


def _read_only(data: EtcLive) -> bool:
    mount = data.overlay.mount if data.overlay is not None else None
    return mount is not None and mount.read_only


# --- small helpers -----------------------------------------------------------------------------


def _nix_str(text: str) -> str:
    """A Nix string naming exactly this host text (nix_str escapes it; odd bytes are shown escaped)."""
    return nix_str(text)


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "unreadable"


def _owner(uid: int | None, gid: int | None) -> str:
    return f"{'?' if uid is None else uid}:{'?' if gid is None else gid}"


def _describe(e: EtcEntry) -> str:
    match e.type:
        case EntryType.SYMLINK:
            return f"symlink -> {printable(e.target or '')}"
        case EntryType.FILE:
            return f"file sha256 {_short(e.sha256)} mode {e.mode:04o} owner {_owner(e.uid, e.gid)}"
        case _:
            return f"{e.type.value} mode {e.mode:04o} owner {_owner(e.uid, e.gid)}"


def _expected(c: ClosureEntry, overlay: bool = False) -> str:
    if c.is_copy:
        return f"file sha256 {_short(c.sha256)} mode {c.mode} owner {_owner(c.uid, c.gid)}"
    if c.mode == "direct-symlink" or (overlay and c.target):
        return f"symlink -> {printable(c.target or '')}"
    return f"symlink -> /etc/static/{printable(c.rel)}"


def _source_nix(rel: str, e: EtcEntry | None, *, defined: bool = False, declared_copy: bool = False) -> str:
    """The snippet that would declare what is live (the file itself is the user's to add).

    Where the flake already defines the entry (its `.text` or `.source`, or a NixOS module's), a
    second definition would fail with "conflicting definition values": the snippet then replaces
    it with `lib.mkForce`, says so, and names the live file to copy into the flake. A declared
    managed copy keeps its mode and owner only if they are forced too."""
    attr = f"environment.etc.{_nix_str(rel)}"

    def value(v: str) -> str:
        if not defined:
            return v
        return f"lib.mkForce ({v})" if v.startswith("./. +") else f"lib.mkForce {v}"

    shown = printable(rel)
    notes = [f"# replaces the flake's definition of /etc/{shown} (a second definition would conflict)"]
    if e is not None and e.type is EntryType.SYMLINK:
        assignment = f"{attr}.source = {value(_nix_str(e.target or ''))};"
    else:
        name = rel.rsplit("/", 1)[-1]
        source = f"./{name}" if _PLAIN.fullmatch(name) else f"./. + {_nix_str('/' + name)}"
        kind = e.type.value if e is not None else "file"
        notes.append(
            f"# first copy the live {kind} /etc/{shown} into the flake, beside this module, as ./{printable(name)}"
        )
        if e is not None and e.type is EntryType.FILE and (e.mode != 0o644 or e.uid or e.gid or declared_copy):
            fields = {"source": source, "mode": f'"{e.mode:04o}"', "user": f'"+{e.uid}"', "group": f'"+{e.gid}"'}
            assignment = f"{attr} = {{ {' '.join(f'{k} = {value(v)};' for k, v in fields.items())} }};"
        else:
            assignment = f"{attr}.source = {value(source)};"
    return "\n".join([*notes, assignment]) if defined else assignment


def _restore(c: ClosureEntry, data: EtcLive | None = None) -> str:
    path = f"/etc/{c.rel}"
    if data is not None and _read_only(data):
        return ""  # a read-only /etc: the next boot (or switch) mounts the declared image again
    if data is not None and _on_overlay(data):
        # no /etc/static on an overlay: the closure's own source, written through the overlay
        if c.is_copy and c.target:
            argv = ["install", "-m", c.mode]
            argv += ["-o", str(c.uid)] if c.uid is not None else []
            argv += ["-g", str(c.gid)] if c.gid is not None else []
            return command(*argv, c.target, path)
        if c.target:
            return command("ln", "-sfn", c.target, path)
        return ""
    if c.is_copy:
        argv = ["install", "-m", c.mode]
        argv += ["-o", str(c.uid)] if c.uid is not None else []
        argv += ["-g", str(c.gid)] if c.gid is not None else []
        return command(*argv, f"/etc/static/{c.rel}", path)
    if c.mode == "direct-symlink" and c.target:
        return command("ln", "-sfn", c.target, path)
    return command("ln", "-sfn", f"/etc/static/{c.rel}", path)


def _evidence(rel: str, e: EtcEntry | None, data: EtcLive | None = None) -> dict[str, str]:
    evidence = {"path": f"/etc/{printable(rel)}"}
    kind = data.overlay.upper.get(rel) if data is not None and data.overlay is not None else None
    if kind is not None and data is not None and data.overlay is not None and data.overlay.mount is not None:
        evidence["overlay"] = f"{kind.value} ({printable(data.overlay.mount.upper or '')}/{printable(rel)})"
    if e is not None:
        evidence["type"] = e.type.value
        if e.type is EntryType.SYMLINK:
            evidence["target"] = printable(e.target or "")
        else:
            evidence.update(mode=f"{e.mode:04o}", owner=_owner(e.uid, e.gid))
        if e.sha256:
            evidence["sha256"] = e.sha256[:12]
    return evidence


def _etc_finding(
    rule: str,
    rel: str,
    kind: Kind,
    expected: str,
    actual: str,
    message: str,
    *,
    nix: str,
    command: str,
    evidence: dict[str, str],
    safe: bool = False,
    reason: str = "",
) -> Finding:
    shown = printable(rel)
    return finding(
        rule_name="etc-sensitive" if sensitive(rel) else rule,
        id=f"etc/{shown}",
        category=E,
        subject=f"/etc/{shown}",
        kind=kind,
        expected=expected,
        actual=actual,
        message=message,
        nix=nix,
        command=command,
        safe=safe,
        reason=reason,
        evidence=evidence,
    )


# --- what is in /etc ---------------------------------------------------------------------------


def _present(declared: DeclaredState, data: EtcLive, inside: Callable[[str], bool] | None = None) -> Iterator[Finding]:
    for rel, e in sorted(data.entries.items()):
        if skipped(rel) or (inside is not None and not inside(rel)):
            continue
        c = data.closure.get(rel) if data.closure is not None else None
        if c is not None:
            yield from _managed(rel, e, c, data)
        elif not _expected_unlisted(rel, e, data):
            yield _unmanaged(rel, e, data, declared.etc.get(rel))


def _expected_unlisted(rel: str, e: EtcEntry, data: EtcLive) -> bool:
    """True for what the reference tree does not list but is no drift."""
    if e.type is EntryType.DIR or allowed(rel):
        return True  # directories hold entries; each of those is judged on its own
    if data.closure is None:
        # no reference: links into /etc/static and recorded copies are taken as managed
        return (e.type is EntryType.SYMLINK and (e.target or "").startswith("/etc/static/")) or rel in data.clean
    # setup-etc.pl installs every managed entry as `<entry>.tmp` and renames it: seen mid-activation
    return rel.endswith(".tmp") and rel[: -len(".tmp")] in data.closure


def _unmanaged(rel: str, e: EtcEntry, data: EtcLive, d: DeclaredEtc | None) -> Finding:
    """Not in the reference tree; `d` is the flake's `environment.etc` entry for it, if any (a
    declared system that is not in the store here, or an entry not yet built)."""
    shown = printable(rel)
    if e.type is EntryType.SYMLINK and (e.target or "").startswith("/etc/static/"):
        why = "a link into /etc/static for a file the declared system does not ship"
    elif rel in data.clean:
        why = "a copy left from an earlier generation (listed in /etc/.clean)"
    else:
        why = f"a {e.type.value} the flake does not declare"
    return _etc_finding(
        "etc-unmanaged",
        rel,
        Kind.UNMANAGED,
        "absent",
        _describe(e),
        f"/etc/{shown} is {why}",
        nix=_source_nix(rel, e, defined=d is not None, declared_copy=d is not None and d.mode != "symlink"),
        command=command("rm", "--", f"/etc/{rel}"),
        reason="removing a file by hand needs a decision: it may hold state or secrets",
        evidence=_evidence(rel, e, data),
    )


def _managed(rel: str, e: EtcEntry, c: ClosureEntry, data: EtcLive) -> Iterator[Finding]:
    if rel == "machine-id" and data.overlay is not None and "/etc/machine-id" in data.overlay.overmounts:
        return  # etc-activation.nix: systemd bind-mounts /run/machine-id over the empty placeholder
    why = _managed_difference(e, c, _on_overlay(data))
    if why is None:
        return
    shown = printable(rel)
    restore = _restore(c, data)
    safe = bool(restore)
    if e.type is EntryType.DIR:
        restore = command("rm", "-r", "--", f"/etc/{rel}") + " && " + restore
        safe = False  # a directory put there by hand may hold state
    yield _etc_finding(
        "etc-changed",
        rel,
        Kind.CHANGED,
        _expected(c, _on_overlay(data)),
        _describe(e),
        f"/etc/{shown}: {why}",
        nix=_source_nix(rel, e, defined=True, declared_copy=c.is_copy),
        command=restore,
        safe=safe,
        reason="" if safe else _no_safe_revert(data, e),
        evidence=_evidence(rel, e, data),
    )


def _no_safe_revert(data: EtcLive, e: EtcEntry | None) -> str:
    if _read_only(data):
        return "/etc is read-only: nixos-rebuild boot and a reboot mount the declared image again"
    if e is not None and e.type is EntryType.DIR:
        return "the directory may hold files put there by hand"
    return "the declared source is not known here: nixos-rebuild switch restores it"


def _managed_difference(e: EtcEntry, c: ClosureEntry, overlay: bool = False) -> str | None:
    """Why a managed entry differs from the closure's, or None when it matches."""
    if c.is_copy:
        if e.type is not EntryType.FILE:
            return f"managed copy replaced by a {e.type.value}"
        diffs: list[str] = []
        if e.sha256 and c.sha256 and e.sha256 != c.sha256:
            diffs.append(f"content differs (sha256 {_short(e.sha256)}, declared {_short(c.sha256)})")
        if c.mode.isdigit() and e.mode != int(c.mode, 8):
            diffs.append(f"mode {e.mode:04o}, declared {c.mode}")
        if (c.uid is not None and e.uid != c.uid) or (c.gid is not None and e.gid != c.gid):
            diffs.append(f"owner {_owner(e.uid, e.gid)}, declared {_owner(c.uid, c.gid)}")
        return "; ".join(diffs) or None
    if e.type is not EntryType.SYMLINK:
        return f"managed link replaced by a {e.type.value}"
    want = c.target if c.mode == "direct-symlink" or (overlay and c.target) else f"/etc/static/{c.rel}"
    if e.target != want:
        return f"managed link points to {printable(e.target or '')}, not {printable(want or '')}"
    return None


# --- what should be there ----------------------------------------------------------------------


def _declared_targets(declared: DeclaredState, data: EtcLive) -> dict[str, ClosureEntry]:
    wanted: dict[str, ClosureEntry] = dict(data.closure or {})
    for target, d in declared.etc.items():
        if d.enable and target not in wanted:
            wanted[target] = ClosureEntry(target, d.mode, d.source)
    return wanted


def _missing(declared: DeclaredState, data: EtcLive, inside: Callable[[str], bool] | None = None) -> Iterator[Finding]:
    for rel, c in sorted(_declared_targets(declared, data).items()):
        if (
            (inside is not None and not inside(rel))
            or rel in data.entries
            or skipped(rel)
            or _inside_replaced(rel, data.entries)
            or data.unseen(rel)
        ):
            continue
        shown = printable(rel)
        restore = _restore(c, data)
        yield _etc_finding(
            "etc-missing",
            rel,
            Kind.MISSING,
            _expected(c, _on_overlay(data)),
            "absent",
            f"/etc/{shown} is declared but absent" + _deleted_how(rel, data),
            nix=f"environment.etc.{_nix_str(rel)}.enable = false;",
            command=restore,
            safe=bool(restore),
            reason="" if restore else _no_safe_revert(data, None),
            evidence=_evidence(rel, None, data),
        )


def _deleted_how(rel: str, data: EtcLive) -> str:
    if data.overlay is None:
        return ""
    kind = data.overlay.upper.get(rel)
    if kind is UpperKind.WHITEOUT:
        return " (deleted since boot: a whiteout in the overlay's upper directory)"
    if any(data.overlay.upper.get(p) is UpperKind.OPAQUE for p in _parent_dirs(rel)):
        return " (its directory was deleted and recreated since boot: an opaque directory)"
    return ""


def _parent_dirs(rel: str) -> Iterator[str]:
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


# --- the /etc layout ---------------------------------------------------------------------------


def _layout(declared: DeclaredState, data: EtcLive) -> Iterator[Finding]:
    want = layout.declared_layout(declared.layout)
    mount = data.overlay.mount if data.overlay is not None else None
    why = layout.etc_mismatch(want, mount, data.has_static) if data.mount_known else None
    if why is not None:
        yield _layout_finding(
            "layout", want.etc.value, (data.live_layout.value if data.live_layout else "unknown"), why
        )
    if data.overlay is None or mount is None or mount.fs_type != "overlay":
        return
    image = declared.layout.etc_metadata_image
    if image and data.overlay.metadata_image and data.overlay.metadata_image != image:
        yield _layout_finding(
            "layout/metadata-image",
            image,
            data.overlay.metadata_image,
            f"/etc is mounted from the metadata image {printable(data.overlay.metadata_image)}, "
            f"not the declared {printable(image)}",
        )
    for point in data.overlay.overmounts:
        rel = point[len("/etc/") :]
        if rel in ("machine-id", "passwd", "group", "shadow", "gshadow"):
            continue  # systemd's machine-id bind mount; userborn and sysusers' read-only binds (mutableUsers = false)
        yield finding(
            rule_name="etc-overmounted",
            id=f"etc/{printable(rel)}/mount",
            category=E,
            subject=printable(point),
            kind=Kind.UNMANAGED,
            expected="part of the /etc overlay",
            actual="a mount point",
            message=f"something is mounted over {printable(point)}: the overlay's file is hidden",
            nix="",
            command=command("umount", point),
            reason="what is mounted there may be in use",
            evidence={"path": printable(point)},
        )


def _layout_finding(sub: str, expected: str, actual: str, message: str) -> Finding:
    return finding(
        rule_name="layout-mismatch",
        id=f"etc/{sub}",
        category=E,
        subject="/etc",
        kind=Kind.CHANGED,
        expected=printable(expected),
        actual=printable(actual),
        message=message,
        nix="",
        command="",
        reason="the layout is made at boot: nixos-rebuild boot and a reboot",
        evidence={"path": "/etc"},
    )


def _inside_replaced(rel: str, entries: Mapping[str, EtcEntry]) -> bool:
    """A parent directory replaced by a link or file is reported once, not once per child."""
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        parent = entries.get("/".join(parts[:i]))
        if parent is not None and parent.type is not EntryType.DIR:
            return True
    return False
