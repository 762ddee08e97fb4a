"""Which host trees the daemon watches and which categories a changed path affects.

Both come from the category table (`categories.TABLE`): each row lists the paths its collector
reads, so a path a collector reads cannot be missing here. The flake's directory is the one
exception known only at run time: it belongs to the row marked `flake` (repo).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nixdrift.categories import TABLE, Scope, Watch
from nixdrift.models import Category
from nixdrift.rootfs import Root


class Action(enum.Enum):
    CAPTURE = "capture"  # re-capture the categories
    SWITCH = "switch"  # the system generation changed: everything
    REEVALUATE = "reevaluate"  # the flake changed: evaluate again (through the cache), then capture
    IGNORE = "ignore"  # git's own bookkeeping (locks, objects, logs): nothing a scan would see


# Inside the flake's .git only these say the repository changed (a commit, a checkout, `git add`).
# Everything else there is git's bookkeeping, and reacting to it loops: reading the repository
# takes index.lock, whose events would trigger another read.
GIT_MEANINGFUL = ("HEAD", "index", "packed-refs", "refs")


@dataclass(frozen=True, slots=True)
class Tree:
    """One watched tree: a host path, whether recursive, and what its events mean."""

    host_path: str
    recursive: bool
    names: frozenset[str] = frozenset()  # when set, only these entries of the directory matter
    local: bool = False  # a path on this machine (the flake), not below the root

    def real(self, root: Root) -> Path:
        return Path(self.host_path) if self.local else root.path(self.host_path)


def trees(root: Root, flake_dir: Path | None) -> list[Tree]:
    """The trees worth watching below the root (only those that exist)."""
    return [t for t in candidate_trees(root, flake_dir) if _exists(root, t)]


def _exists(root: Root, tree: Tree) -> bool:
    real = tree.real(root)
    return real.is_dir() and not real.is_symlink()


def homes(root: Root) -> list[str]:
    return ["/root", *sorted(f"/home/{p.name}" for p in root.path("/home").glob("*") if p.is_dir())]


def watches() -> list[Watch]:
    """Every watch of the table, once."""
    return list(dict.fromkeys(w for entry in TABLE.values() for w in entry.watch))


def _below(path: str, top: str) -> bool:
    return path.startswith(top.rstrip("/") + "/")


def plan(all_watches: Iterable[Watch], home_dirs: Iterable[str]) -> list[Tree]:
    """The fewest trees that deliver every watch's events: a directory watched whole covers what
    lies below it; single entries outside any such tree watch their directory for those names."""
    home_dirs = list(home_dirs)
    concrete = [(w, p) for w in all_watches for p in w.concrete(home_dirs)]
    dirs = sorted({p for w, p in concrete if w.scope is Scope.TREE})
    tops = [d for d in dirs if not any(_below(d, other) for other in dirs)]
    entries: dict[str, set[str]] = {}
    for w, p in concrete:
        if w.scope is Scope.TREE or any(_below(p, top) for top in tops):
            continue
        parent, _, name = p.rpartition("/")
        if "*" in p:
            raise ValueError(f"watch {w.path}: a wildcard entry must lie inside a watched tree")
        entries.setdefault(parent or "/", set()).add(name)
    return [Tree(d, True) for d in tops] + [Tree(d, False, frozenset(n)) for d, n in sorted(entries.items())]


def candidate_trees(root: Root, flake_dir: Path | None) -> list[Tree]:
    """Every tree worth watching, existing or not: systemd creates /run/systemd/transient with the
    first transient unit, and a user's profile directory appears with their first install."""
    out = plan(watches(), homes(root))
    if flake_dir is not None:
        out.append(Tree(str(flake_dir), True, local=True))
    return out


def host_path(root: Root, real: str) -> str | None:
    """The host path of a path on this machine below the root, or None when outside it."""
    prefix = str(root.prefix).rstrip("/")
    if not prefix:
        return real
    if real == prefix:
        return "/"
    if real.startswith(prefix + "/"):
        return real[len(prefix) :]
    return None


def _flake_categories() -> frozenset[Category]:
    return frozenset(c for c, e in TABLE.items() if e.flake)


def route(path: str, flake_dir: Path | None) -> tuple[Action, frozenset[Category]]:
    """What a changed host path means (flake paths are real paths, not host paths)."""
    if flake_dir is not None and (path == str(flake_dir) or path.startswith(str(flake_dir) + "/")):
        inside = path[len(str(flake_dir)) :].lstrip("/").split("/")
        if inside[0] == ".git" and (len(inside) == 1 or inside[1] not in GIT_MEANINGFUL):
            return Action.IGNORE, frozenset()
        return Action.REEVALUATE, _flake_categories()
    cats: set[Category] = set()
    switch = False
    for category, entry in TABLE.items():
        for w in entry.watch:
            if w.matches(path):
                cats.add(category)
                switch = switch or w.switch
    return (Action.SWITCH if switch else Action.CAPTURE), frozenset(cats)


def _feeds(tree: Tree, watch: Watch) -> bool:
    """Do this tree's events reach this watch?"""
    if tree.names:
        return any(watch.matches(f"{tree.host_path.rstrip('/')}/{n}") for n in tree.names)
    if watch.matches(tree.host_path):
        return True
    probe = watch.literal or watch.path.replace("~", "/root", 1)
    return tree.recursive and _below(probe, tree.host_path)


def categories_of(trees_: Iterable[Tree], flake_dir: Path | None) -> frozenset[Category]:
    """The categories that the given trees' events feed (for rescans after lost events)."""
    out: set[Category] = set()
    for t in trees_:
        if t.local:
            out |= _flake_categories()
            continue
        out |= {c for c, e in TABLE.items() if any(_feeds(t, w) for w in e.watch)}
    return frozenset(out)
