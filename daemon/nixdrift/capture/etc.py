"""Live /etc, classified the way NixOS's setup-etc.pl builds it.

At activation setup-etc.pl points /etc/static at the system's etc tree (/nix/store/...-etc/etc)
and, for every entry there, either links /etc/<rel> -> /etc/static/<rel>, or, when the tree holds a
`<rel>.mode` sidecar, copies the file with that mode and the owner in `<rel>.uid` / `<rel>.gid`
and lists it in /etc/.clean (`direct-symlink` in the sidecar links straight to the store target).
Everything else in /etc was written by something other than the flake.

The reference tree is the declared closure's etc when it is realised here, else the running
system's /etc/static (said in the problems). Only what must be compared is hashed: managed copies,
files standing where the closure has an entry, and imperative files for the report's evidence
(never a file on the allowlist, so ssh host keys are never opened). Fifos, sockets and devices are
never opened. Contents are never kept: a sha256 digest, mode and owner are.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from nixdrift import layout
from nixdrift.capture import accounts, digests, statcache
from nixdrift.capture import mounts as mountinfo
from nixdrift.capture.closure import toplevel_dir
from nixdrift.capture.needs import EtcNeeds, Toplevel
from nixdrift.layout import EtcMount
from nixdrift.live.etc import ClosureEntry, EntryType, EtcEntry, EtcLive, OverlayLive, UpperKind, allowed, skipped
from nixdrift.models import Category, Section
from nixdrift.rootfs import Root, read_regular
from nixdrift.text import printable

SNAPSHOT_PATHS: tuple[str, ...] = ("/etc",)

CLEAN = "/etc/.clean"
STATIC = "/etc/static"
MAX_HASH_BYTES = 16 * 1024 * 1024  # an imperative file larger than this is reported by size only


def _type_of(mode: int) -> EntryType:
    if stat.S_ISREG(mode):
        return EntryType.FILE
    if stat.S_ISLNK(mode):
        return EntryType.SYMLINK
    if stat.S_ISDIR(mode):
        return EntryType.DIR
    if stat.S_ISFIFO(mode):
        return EntryType.FIFO
    return EntryType.SOCKET if stat.S_ISSOCK(mode) else EntryType.DEVICE


def parse_clean(text: str, source: str = CLEAN) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """/etc/.clean: one path relative to /etc per line, as setup-etc.pl writes it."""
    rels: list[str] = []
    problems: list[str] = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if line.startswith("/") or ".." in line.split("/"):
            problems.append(f"{source}:{n}: not a path below /etc: {printable(line)!r}")
            continue
        rels.append(line)
    return tuple(dict.fromkeys(rels)), tuple(problems)


def parse_sidecar_id(text: str, names: Mapping[str, int]) -> int | None:
    """A `.uid`/`.gid` sidecar: `+N` is a number, anything else a name looked up on the host."""
    value = text.strip()
    if value.startswith("+") and value[1:].isascii() and value[1:].isdigit():
        return int(value[1:])
    return names.get(value)


def sha256_of(path: Path, limit: int = MAX_HASH_BYTES) -> str | None:
    """Digest of a regular file (never follows into a fifo: callers check the type first)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            return None
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _listing(
    path: str | Path, rel_dir: str, label: str, problems: list[str], unlisted: list[str] | None
) -> Iterator[os.DirEntry[str]]:
    """A directory's entries as they are read; one that cannot be (opened, or read to its end) is a
    problem and `unlisted`."""
    try:
        with os.scandir(path) as it:
            yield from it
    except OSError as exc:
        problems.append(f"{label}/{printable(rel_dir)}: cannot list: {exc.strerror or type(exc).__name__}")
        if unlisted is not None:
            unlisted.append(rel_dir)


def _walk(
    top: Path,
    label: str,
    problems: list[str],
    prune: frozenset[str] = frozenset(),
    unlisted: list[str] | None = None,
    start: str = "",
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry below `top` (below its `start` directory, when given) as (rel, DirEntry),
    without following symlinks, skipped names and their subtrees left out, nothing below a `prune`
    entry. A directory that cannot be listed is a problem (and `unlisted`); the walk goes on."""
    stack = [start]
    while stack:
        rel_dir = stack.pop()
        # read as walked, not listed whole first: a directory of 100,000 files is never 100,000
        # DirEntry objects (each keeping its stat) at once; one directory is open at a time
        for entry in _listing(os.path.join(top, rel_dir) if rel_dir else top, rel_dir, label, problems, unlisted):
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if skipped(rel):
                continue
            yield rel, entry
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir and rel not in prune:
                stack.append(rel)


def _reference_tree(root: Root, declared: Toplevel, problems: list[str]) -> tuple[Path | None, str]:
    """The etc tree to compare with: the declared closure's, else the running system's."""
    if declared.toplevel:
        host = root.resolve(declared.toplevel.rstrip("/") + "/etc")
        if toplevel_dir(root, declared) is not None and root.real(host).is_dir():
            return root.real(host), host
        problems.append(f"declared system {declared.toplevel} is not in the store: comparing with /etc/static")
    host = root.resolve(STATIC)
    if root.real(host).is_dir():
        return root.real(host), host
    problems.append("no reference etc tree (declared closure or /etc/static): managed files are not compared")
    return None, ""


@dataclass(frozen=True, slots=True)
class _Owners:
    users: Mapping[str, int]
    groups: Mapping[str, int]

    @classmethod
    def read(cls, root: Root) -> _Owners:
        def text(path: str) -> str:
            try:
                return root.read_text(path)
            except OSError:
                return ""

        users, _ = accounts.parse_passwd(text(accounts.PASSWD))
        groups, _ = accounts.parse_group(text(accounts.GROUP))
        return cls({u.name: u.uid for u in users}, {g.name: g.gid for g in groups})


def _sidecar(path: str) -> str | None:
    try:  # a plain file of a few bytes, as make-etc.sh writes it; never a link out of the root
        return read_regular(path, limit=4096).decode("utf-8", errors="surrogateescape").strip()
    except OSError:
        return None


def _link_target(path: str, host: str, rel: str) -> str:
    """A closure link's target as a host path."""
    target = os.readlink(path)
    return target if target.startswith("/") else os.path.normpath(f"{host}/{os.path.dirname(rel)}/{target}")


def _closure_entries(root: Root, tree: Path, host: str, problems: list[str]) -> dict[str, ClosureEntry]:
    """Every entry setup-etc.pl would install: links, and anything with a `.mode` sidecar."""
    listed = {rel: (entry.path, entry.is_symlink()) for rel, entry in _walk(tree, host, problems)}
    return closure_of(root, tree, host, listed)


def closure_of(root: Root, tree: Path, host: str, listed: Mapping[str, tuple[str, bool]]) -> dict[str, ClosureEntry]:
    """The closure entries of a listing of the reference tree (rel -> (path, is a symlink)), sidecars
    included in it: the full walk's, or the few a realtime event names (capture.etc_paths)."""
    owners: _Owners | None = None
    out: dict[str, ClosureEntry] = {}
    for rel, (path, is_link) in listed.items():
        mode = _sidecar(f"{tree}/{rel}.mode") if f"{rel}.mode" in listed else None
        if mode is None and not is_link:
            continue  # a sidecar or a plain directory: not installed as such
        if mode is None:
            out[rel] = ClosureEntry(rel, "symlink", None)  # its target is read only when needed
            continue
        target = _link_target(path, host, rel) if is_link else None
        if mode == "direct-symlink":
            out[rel] = ClosureEntry(rel, mode, target)
            continue
        owners = owners or _Owners.read(root)
        uid_text = _sidecar(f"{tree}/{rel}.uid") or "+0"
        gid_text = _sidecar(f"{tree}/{rel}.gid") or "+0"
        out[rel] = ClosureEntry(
            rel,
            mode,
            target,
            uid=parse_sidecar_id(uid_text, owners.users),
            gid=parse_sidecar_id(gid_text, owners.groups),
            owner=f"{uid_text}:{gid_text}",
        )
    return out


def _wants_digest(rel: str, closure: Mapping[str, ClosureEntry] | None, clean: frozenset[str]) -> bool:
    return rel in clean or (closure is not None and rel in closure) or not allowed(rel)


def _live_entries(
    etc: Path,
    closure: Mapping[str, ClosureEntry] | None,
    clean: frozenset[str],
    problems: list[str],
    unlisted: list[str],
    held: Mapping[str, digests.Held] | None = None,
) -> dict[str, EtcEntry]:
    entries: dict[str, EtcEntry] = {}
    leaves = frozenset(closure or ())
    for rel, entry in _walk(etc, "/etc", problems, prune=leaves, unlisted=unlisted):
        try:
            if entry.is_symlink():
                entries[rel] = EtcEntry(rel, EntryType.SYMLINK, target=os.readlink(entry.path))
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            problems.append(f"/etc/{printable(rel)}: cannot stat: {exc.strerror or type(exc).__name__}")
            continue
        entries[rel] = entry_of(entry.path, rel, st, closure, clean, held, problems)
    return entries


def entry_of(
    path: str,
    rel: str,
    st: os.stat_result,
    closure: Mapping[str, ClosureEntry] | None,
    clean: frozenset[str],
    held: Mapping[str, digests.Held] | None,
    problems: list[str],
) -> EtcEntry:
    """The live entry of what is not a symlink at `path` (its lstat `st`), hashed where it will be
    compared byte for byte."""
    kind = _type_of(st.st_mode)
    if kind is EntryType.FILE and held and (record := held.get(f"/etc/{rel}")) is not None:
        # a snapshot holds this file by digest only: what the host had, not the empty stand-in
        digest = record.sha256 if _wants_digest(rel, closure, clean) else None
        return EtcEntry(rel, kind, record.mode, record.uid, record.gid, None, digest, record.size)
    digest = None
    if kind is EntryType.FILE and _wants_digest(rel, closure, clean):
        try:
            digest = statcache.sha256(Path(path), sha256_of, st)  # from the stat cache if unchanged
        except OSError as exc:
            problems.append(f"/etc/{printable(rel)}: cannot read: {exc.strerror or type(exc).__name__}")
    return EtcEntry(rel, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, None, digest, st.st_size)


def read_clean(root: Root, problems: list[str]) -> frozenset[str]:
    """The managed copies /etc/.clean lists (none when it is absent; a problem when unreadable)."""
    try:
        clean_rels, bad = parse_clean(root.read_text(CLEAN))
    except FileNotFoundError:
        return frozenset()
    except OSError as exc:
        problems.append(f"{CLEAN}: cannot read: {exc.strerror or type(exc).__name__}")
        return frozenset()
    problems.extend(bad)
    return frozenset(clean_rels)


def _with_source_digests(
    root: Root,
    tree: Path,
    host: str,
    closure: dict[str, ClosureEntry],
    entries: Mapping[str, EtcEntry],
    problems: list[str],
) -> dict[str, ClosureEntry]:
    """Hash the closure's source only where a live regular file stands to be compared with it."""
    out = dict(closure)
    for rel, c in closure.items():
        live = entries.get(rel)
        if live is None or live.type is not EntryType.FILE:
            continue
        try:
            target = c.target or _link_target(os.path.join(tree, rel), host, rel)
            source = root.open_path(target)
            digest = statcache.sha256(source, sha256_of) if source.is_file() else None  # store: hashed once
        except OSError as exc:
            problems.append(f"{printable(host)}/{printable(rel)}: cannot read: {exc.strerror or type(exc).__name__}")
            continue
        out[rel] = ClosureEntry(c.rel, c.mode, target, c.uid, c.gid, c.owner, digest)
    return out


def _etc_mounts(root: Root, problems: list[str], needed: bool) -> tuple[EtcMount | None, tuple[str, ...], bool]:
    """The mount in effect on /etc, the mount points below /etc, and whether mountinfo was read
    (a problem when `needed`: the flake declares an overlay /etc, which only mountinfo confirms)."""
    text: str | None = None
    for path in (mountinfo.HOST_MOUNTINFO, mountinfo.MOUNTINFO) if root.is_live else (mountinfo.MOUNTINFO,):
        try:
            text = root.read_text(path)
            break
        except OSError:
            continue
    if text is None:
        if needed:
            problems.append(f"{mountinfo.MOUNTINFO}: cannot read: the /etc overlay mount is not known")
        return None, (), False
    mounts, _ = mountinfo.parse_mountinfo(text)
    on_etc = [m for m in mounts if m.mount_point == "/etc"]
    below = tuple(sorted({m.mount_point for m in mounts if m.mount_point.startswith("/etc/")}))
    if not on_etc:
        return None, below, True
    m = on_etc[-1]
    etc_mount = EtcMount(m.fs_type, "ro" in m.options, layout.parse_options(m.super_options))
    return etc_mount, below, True


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: str) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _parents(rel: str) -> Iterator[str]:
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def _upper_entries(
    root: Root, upper: str, closure: Mapping[str, ClosureEntry] | None, problems: list[str]
) -> dict[str, UpperKind]:
    """Classify every entry of the overlay's upper directory: the changes made to /etc since boot."""
    top = root.path(upper)
    if not top.is_dir():
        problems.append(f"{upper}: the overlay's upper directory is not below the root")
        return {}
    lower = frozenset(closure or ())
    below_lower = frozenset(p for rel in lower for p in _parents(rel))
    out: dict[str, UpperKind] = {}
    for rel, entry in _walk(top, upper, problems):
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if (kind := upper_kind(entry.path, rel, st, lower, below_lower)) is not None:
            out[rel] = kind
    return out


def upper_kind(
    path: str, rel: str, st: os.stat_result, lower: frozenset[str], below_lower: frozenset[str]
) -> UpperKind | None:
    """What an entry of the overlay's upper directory is: a whiteout, an opaque or new directory, a
    copied-up or new file; None for a directory made only to hold what is below it."""
    if _whiteout(st):
        return UpperKind.WHITEOUT
    if stat.S_ISDIR(st.st_mode):
        if _opaque(path):
            return UpperKind.OPAQUE
        return UpperKind.NEW if rel not in below_lower and rel not in lower else None
    return UpperKind.COPY_UP if rel in lower else UpperKind.NEW


def _overlay(
    root: Root,
    mount: EtcMount | None,
    below: tuple[str, ...],
    closure: Mapping[str, ClosureEntry] | None,
    problems: list[str],
) -> OverlayLive:
    upper = mount.upper if mount is not None and mount.fs_type == "overlay" and not mount.read_only else None
    changes = _upper_entries(root, upper, closure, problems) if upper else {}
    image = _link(root, layout.METADATA_IMAGE_LINK)
    return OverlayLive(mount, changes, image, below)


def _with_link_targets(
    tree: Path, closure: dict[str, ClosureEntry], entries: Mapping[str, EtcEntry]
) -> dict[str, ClosureEntry]:
    """On an overlay /etc a managed link points straight at its store source (the metadata image
    holds the link itself): read the closure's target where a live link stands to be compared, or
    where the entry is gone (its revert writes that link again)."""
    out = dict(closure)
    for rel, c in closure.items():
        live = entries.get(rel)
        if c.mode != "symlink" or c.target is not None or (live is not None and live.type is not EntryType.SYMLINK):
            continue
        try:
            out[rel] = ClosureEntry(c.rel, c.mode, os.readlink(os.path.join(tree, rel)), c.uid, c.gid, c.owner)
        except OSError:
            continue
    return out


def _link(root: Root, path: str) -> str | None:
    try:
        return root.readlink(path)
    except OSError:
        return None


def capture(root: Root, declared: EtcNeeds) -> Section[EtcLive]:
    root = root.for_scan()  # each managed copy's store source is resolved through the same links
    etc = root.path("/etc")
    if not etc.is_dir() or etc.is_symlink():
        return Section.missing(Category.ETC, "/etc is not a directory below the root")
    try:
        held = digests.load(root)
    except OSError as exc:  # the empty stand-ins of held files must not be compared as the files
        return Section.missing(Category.ETC, str(exc))
    problems: list[str] = []
    clean = read_clean(root, problems)
    tree, host = _reference_tree(root, declared, problems)
    closure = _closure_entries(root, tree, host, problems) if tree is not None else None
    unlisted: list[str] = []
    entries = _live_entries(etc, closure, clean, problems, unlisted, held)
    if tree is not None and closure is not None:
        closure = _with_source_digests(root, tree, host, closure, entries, problems)
    has_static = _link(root, STATIC) is not None
    # a classic host is confirmed by /etc/static alone; the overlay (declared, or no /etc/static) by mountinfo
    if declared.layout.etc_overlay or not has_static:
        mount, below, known = _etc_mounts(root, problems, declared.layout.etc_overlay)
    else:
        mount, below, known = None, (), True
    is_overlay = mount is not None and mount.fs_type == "overlay"
    overlay = _overlay(root, mount, below, closure, problems) if is_overlay or declared.layout.etc_overlay else None
    if overlay is not None and tree is not None and closure is not None:
        closure = _with_link_targets(tree, closure, entries)
    live = EtcLive(entries, clean, closure, host, frozenset(unlisted), has_static, overlay, known)
    return Section(Category.ETC, live, problems=tuple(problems))
