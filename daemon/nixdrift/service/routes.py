"""Which host trees the daemon watches and which categories a changed path affects."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nixdrift.models import Category
from nixdrift.rootfs import Root

UNIT_DIRS = ("/run/systemd/system", "/run/systemd/transient", "/etc/systemd/system.control", "/etc/systemd/system")
PROFILES = "/nix/var/nix/profiles"
GENERATION_LINKS = ("current-system", "booted-system")
USER_FILES = frozenset({"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"})
NETWORK_FILES = frozenset({"/etc/resolv.conf", "/etc/hostname", "/etc/hosts"})


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


def candidate_trees(root: Root, flake_dir: Path | None) -> list[Tree]:
    """Every tree worth watching, existing or not: systemd creates /run/systemd/transient with the
    first transient unit, and a user's profile directory appears with their first install."""
    out = [Tree("/etc", True)]
    out += [Tree(d, True) for d in UNIT_DIRS if not d.startswith("/etc/")]
    out += [Tree(PROFILES, True), Tree("/run", False, frozenset(GENERATION_LINKS))]
    homes = ["/root", *sorted(f"/home/{p.name}" for p in root.path("/home").glob("*") if p.is_dir())]
    out += [Tree(f"{h}/.local/state/nix/profiles", True) for h in homes]
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


def route(path: str, flake_dir: Path | None) -> tuple[Action, frozenset[Category]]:
    """What a changed host path means (flake paths are real paths, not host paths)."""
    if flake_dir is not None and (path == str(flake_dir) or path.startswith(str(flake_dir) + "/")):
        inside = path[len(str(flake_dir)) :].lstrip("/").split("/")
        if inside[0] == ".git" and (len(inside) == 1 or inside[1] not in GIT_MEANINGFUL):
            return Action.IGNORE, frozenset()
        return Action.REEVALUATE, frozenset({Category.REPO})
    if path in USER_FILES:
        return Action.CAPTURE, frozenset({Category.USERS})
    if path in NETWORK_FILES:
        return Action.CAPTURE, frozenset({Category.NETWORK, Category.ETC})
    if any(path == d or path.startswith(d + "/") for d in UNIT_DIRS) or path.startswith("/etc/systemd/"):
        return Action.CAPTURE, frozenset({Category.SERVICES, Category.SERVICE_CONFIG})
    if path == "/etc" or path.startswith("/etc/"):
        return Action.CAPTURE, frozenset({Category.ETC})
    if path.startswith(PROFILES + "/") or "/.local/state/nix/profiles" in path:
        if path.startswith(PROFILES + "/system"):
            return Action.SWITCH, frozenset({Category.GENERATION, Category.PACKAGES})
        return Action.CAPTURE, frozenset({Category.PACKAGES})
    if path in {f"/run/{n}" for n in GENERATION_LINKS}:
        return (Action.SWITCH if path == "/run/current-system" else Action.CAPTURE), frozenset({Category.GENERATION})
    return Action.CAPTURE, frozenset()


def categories_of(trees_: Iterable[Tree], flake_dir: Path | None) -> frozenset[Category]:
    """The categories that the given trees' events feed (for rescans after lost events)."""
    out: set[Category] = set()
    for t in trees_:
        probe = t.host_path + "/x" if t.recursive or not t.names else t.host_path + "/" + sorted(t.names)[0]
        action, cats = route(probe, flake_dir)
        out |= cats
        if t.host_path == "/etc":
            out |= {Category.USERS, Category.NETWORK, Category.SERVICES, Category.SERVICE_CONFIG, Category.ETC}
        if action is Action.SWITCH:
            out.add(Category.GENERATION)
    return frozenset(out)
