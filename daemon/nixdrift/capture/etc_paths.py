"""/etc re-captured at the paths a realtime event names, not whole.

An edit below /etc names its path; re-capturing all of /etc for it costs as much as the drift
already known (15,000 recorded files: seconds per event). Here only the named entries are read,
with what classifying them needs and nothing more: /etc/.clean, the reference tree's entries at
and below them (and whether an ancestor is a managed leaf, where the full walk stops), the
ancestors' types (a directory replaced by a file hides what is below it), the overlay mount and
its upper directory at those paths. `compare.etc.compare_paths` then judges exactly those entries,
and gives the findings a full capture gives for them; the daemon merges them into what it knows.
The periodic full capture stays the truth, and lost events still rescan everything.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from nixdrift import layout
from nixdrift.capture import digests
from nixdrift.capture import etc as full
from nixdrift.capture.needs import EtcNeeds
from nixdrift.live.etc import ClosureEntry, EntryType, EtcEntry, EtcLive, OverlayLive, UpperKind, skipped
from nixdrift.models import Category, Section
from nixdrift.rootfs import Root
from nixdrift.text import printable


@dataclass(frozen=True, slots=True)
class Scope:
    """What a batch of events names below /etc (paths relative to it). A path that is no directory
    now (a file, a link, gone) is `deep`: it and everything recorded below it are judged again. A
    directory that is there is `shallow`: the entry alone, since inotify names each of its changed
    children too (watchdog adds the contents of a directory created or moved in), and a directory
    of 15,000 known files must not be read again for one of them."""

    deep: frozenset[str]
    shallow: frozenset[str]

    def holds(self, rel: str) -> bool:
        """At a shallow path, or at or below a deep one (asked of every recorded finding: no scan)."""
        return rel in self.shallow or rel in self.deep or any(a in self.deep for a in _ancestors(rel))

    def shown(self) -> Scope:
        """The same scope as findings spell paths (printable)."""
        return Scope(frozenset(map(printable, self.deep)), frozenset(map(printable, self.shallow)))

    def paths(self) -> list[str]:
        return sorted(self.deep | self.shallow)


def scope_of(root: Root, rels: Iterable[str]) -> Scope | None:
    """The scope of the paths events named; None when they name /etc itself only."""
    etc = root.path("/etc")
    deep: set[str] = set()
    shallow: set[str] = set()
    for rel in {r for r in rels if r}:
        st = _lstat(os.path.join(etc, rel))
        (shallow if st is not None and stat.S_ISDIR(st.st_mode) else deep).add(rel)
    covered = Scope(frozenset(tops(deep) or ()), frozenset())
    kept = frozenset(r for r in shallow if not covered.holds(r))
    return Scope(covered.deep, kept) if covered.deep or kept else None


def tops(rels: Iterable[str]) -> tuple[str, ...] | None:
    """The fewest paths (relative to /etc) that cover these: one below another is covered by it.
    None when /etc itself is named (only a whole capture says what it holds)."""
    named = set(rels)
    if "" in named:
        return None
    return tuple(sorted(r for r in named if not any(a in named for a in _ancestors(r))))


def _ancestors(rel: str) -> Iterator[str]:
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _subtree(
    top: str,
    rel: str,
    problems: list[str],
    label: str,
    unlisted: list[str] | None = None,
    prune: frozenset[str] = frozenset(),
) -> Iterator[str]:
    """Every rel below `rel` (not itself), as capture.etc's walk yields them."""
    return (child for child, _entry in full._walk(Path(top), label, problems, prune, unlisted, start=rel))


def _closure(root: Root, tree: Path, host: str, scope: Scope, problems: list[str]) -> dict[str, ClosureEntry]:
    """The reference tree's entries at and below the scope, and its managed leaves above it."""
    listed: dict[str, tuple[str, bool]] = {}

    def note(rel: str) -> os.stat_result | None:
        path = os.path.join(tree, rel)
        st = _lstat(path)
        if st is not None:
            listed[rel] = (path, stat.S_ISLNK(st.st_mode))
            for suffix in (".mode",):
                if _lstat(path + suffix) is not None:
                    listed[rel + suffix] = (path + suffix, False)
        return st

    for top in scope.paths():
        for above in _ancestors(top):
            note(above)
        st = note(top)
        if st is not None and stat.S_ISDIR(st.st_mode) and top in scope.deep:
            for rel in _subtree(str(tree), top, problems, host):
                path = os.path.join(tree, rel)
                listed[rel] = (path, os.path.islink(path))
    return full.closure_of(root, tree, host, listed)


def _entry(
    path: str,
    rel: str,
    closure: dict[str, ClosureEntry] | None,
    clean: frozenset[str],
    held: Mapping[str, digests.Held],
    problems: list[str],
) -> EtcEntry | None:
    """One live entry, as capture.etc's walk records it."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return EtcEntry(rel, EntryType.SYMLINK, target=os.readlink(path))
    except FileNotFoundError:
        return None
    except OSError as exc:
        problems.append(f"/etc/{printable(rel)}: cannot stat: {exc.strerror or type(exc).__name__}")
        return None
    return full.entry_of(path, rel, st, closure, clean, held, problems)


def _live(
    etc: Path,
    scope: Scope,
    closure: dict[str, ClosureEntry] | None,
    clean: frozenset[str],
    held: Mapping[str, digests.Held],
    problems: list[str],
    unlisted: list[str],
) -> dict[str, EtcEntry]:
    """The entries at and below the scope (where the full walk reaches them) and their ancestors."""
    leaves = frozenset(closure or ())
    out: dict[str, EtcEntry] = {}
    for top in scope.paths():
        reached = True
        for above in _ancestors(top):
            if above not in out and (st := _lstat(os.path.join(etc, above))) is not None:
                # only its type matters (what is below a replaced directory is reported once)
                out[above] = EtcEntry(above, full._type_of(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            e = out.get(above)
            # the full walk never goes below a managed leaf nor below what is not a directory
            reached = reached and e is not None and e.type is EntryType.DIR and above not in leaves
        if not reached or skipped(top):
            continue
        e = _entry(os.path.join(etc, top), top, closure, clean, held, problems)
        if e is None:
            continue
        out[top] = e
        if e.type is not EntryType.DIR or top in leaves or top not in scope.deep:
            continue
        for rel in _subtree(str(etc), top, problems, "/etc", unlisted, prune=leaves):
            child = _entry(os.path.join(etc, rel), rel, closure, clean, held, problems)
            if child is not None:
                out[rel] = child
    return out


def _upper(root: Root, upper: str, scope: Scope, closure: dict[str, ClosureEntry] | None) -> dict[str, UpperKind]:
    """The overlay's upper directory at and below the scope (classified as capture.etc does), and
    the opaque directories above it (a recreated directory hides the lower entries below it)."""
    top = root.path(upper)
    if not top.is_dir():
        return {}
    lower = frozenset(closure or ())
    below_lower = frozenset(p for rel in lower for p in _ancestors(rel))
    out: dict[str, UpperKind] = {}
    for rel_top in scope.paths():
        for above in _ancestors(rel_top):
            path = os.path.join(top, above)
            st = _lstat(path)
            if st is not None and stat.S_ISDIR(st.st_mode) and full._opaque(path):
                out[above] = UpperKind.OPAQUE
        st = _lstat(os.path.join(top, rel_top))
        rels = [rel_top] if st is not None else []
        if st is not None and stat.S_ISDIR(st.st_mode) and rel_top in scope.deep:
            rels += list(_subtree(str(top), rel_top, [], upper))
        for rel in rels:
            path = os.path.join(top, rel)
            st = _lstat(path)
            if st is not None and (kind := full.upper_kind(path, rel, st, lower, below_lower)) is not None:
                out[rel] = kind
    return out


def capture_paths(root: Root, declared: EtcNeeds, scope: Scope) -> Section[EtcLive]:
    """The etc section for the entries the scope holds (see `Scope`)."""
    root = root.for_scan()
    etc = root.path("/etc")
    if not etc.is_dir() or etc.is_symlink():
        return Section.missing(Category.ETC, "/etc is not a directory below the root")
    try:
        held = digests.load(root)
    except OSError as exc:
        return Section.missing(Category.ETC, str(exc))
    problems: list[str] = []
    clean = full.read_clean(root, problems)
    tree, host = full._reference_tree(root, declared, problems)
    closure = _closure(root, tree, host, scope, problems) if tree is not None else None
    unlisted: list[str] = []
    entries = _live(etc, scope, closure, clean, held, problems, unlisted)
    if tree is not None and closure is not None:
        closure = full._with_source_digests(root, tree, host, closure, entries, problems)
    has_static = full._link(root, full.STATIC) is not None
    if declared.layout.etc_overlay or not has_static:
        mount, below, known = full._etc_mounts(root, problems, declared.layout.etc_overlay)
    else:
        mount, below, known = None, (), True
    overlay: OverlayLive | None = None
    if (mount is not None and mount.fs_type == "overlay") or declared.layout.etc_overlay:
        upper = mount.upper if mount is not None and mount.fs_type == "overlay" and not mount.read_only else None
        changes = _upper(root, upper, scope, closure) if upper else {}
        overlay = OverlayLive(mount, changes, full._link(root, layout.METADATA_IMAGE_LINK), below)
        if tree is not None and closure is not None:
            closure = full._with_link_targets(tree, closure, entries)
    live = EtcLive(entries, clean, closure, host, frozenset(unlisted), has_static, overlay, known)
    return Section(Category.ETC, live, problems=tuple(problems))
