"""The category table: for each category, its collector, its comparator and what it reads.

Each row owns the host paths its collector reads, in two lists: `watch` (a change there re-captures
the category at once: the realtime watcher derives its inotify trees from these, and the router
its routes) and `polled` (read, but no filesystem event can announce a change: procfs, the D-Bus
socket, links in home directories; only the category's scan interval sees those). The lists are
built from the collectors' own path constants, so the collector, the watcher and the router read
one list and cannot disagree. Store paths are immutable and never watched: a new generation
arrives through a `switch` watch (/run/current-system, the system profile), which rescans all.

Adding a category means: one collector in capture/, one comparator in compare/, one row here (and
one row in the README's table).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nixdrift import layout
from nixdrift.capture import (
    accounts,
    etc,
    exposure,
    firewall,
    generation,
    mounts,
    network,
    packages,
    repo,
    services,
    users,
)
from nixdrift.compare import etc as c_etc
from nixdrift.compare import exposure as c_exposure
from nixdrift.compare import firewall as c_firewall
from nixdrift.compare import generation as c_generation
from nixdrift.compare import mounts as c_mounts
from nixdrift.compare import network as c_network
from nixdrift.compare import packages as c_packages
from nixdrift.compare import repo as c_repo
from nixdrift.compare import service_config as c_service_config
from nixdrift.compare import services as c_services
from nixdrift.compare import users as c_users
from nixdrift.declared.model import DeclaredState
from nixdrift.live import etc as live_etc
from nixdrift.live import generation as live_generation
from nixdrift.models import Category, Finding, Section
from nixdrift.rootfs import Root

Collector = Callable[[Root, DeclaredState], Section[Any]]
Comparator = Callable[[DeclaredState, Section[Any]], tuple[Finding, ...]]

HOME = "~"  # a watch path "~/x" stands for x in every home directory: /root/x and /home/<name>/x
_HOME_RE = "(?:/root|/home/[^/]+)"
PSEUDO_FS = ("/proc/", "/sys/")  # no inotify events: read on the scan interval only


class Scope(enum.Enum):
    TREE = "tree"  # a directory and everything below it
    ENTRY = "entry"  # one name in its directory (a file, or a link such as /run/current-system)


@dataclass(frozen=True, slots=True)
class Watch:
    """A host path a collector reads. `*` matches within one name; "~/" means every home."""

    path: str
    scope: Scope = Scope.TREE
    switch: bool = False  # a change here means a new system generation: rescan everything
    excluding: tuple[str, ...] = ()  # below a tree: names (relative, `*` within a name) not routed here

    def matches(self, host_path: str) -> bool:
        """Is a change of this host path (or, for a tree, of anything below it) one of ours?"""
        return _matcher(self)(host_path)

    def concrete(self, homes: Iterable[str]) -> tuple[str, ...]:
        """The host paths this watch stands for, given the host's home directories."""
        if self.path.startswith(HOME + "/"):
            return tuple(f"{h}{self.path[len(HOME) :]}" for h in homes)
        return (self.path,)

    @property
    def literal(self) -> str:
        """The longest leading part without a wildcard (a home watch: "")."""
        if self.path.startswith(HOME + "/"):
            return ""
        return self.path.split("*", 1)[0]


def _regex(pattern: str) -> str:
    head = ""
    if pattern.startswith(HOME + "/"):
        head, pattern = _HOME_RE, pattern[len(HOME) :]
    return head + re.escape(pattern).replace(r"\*", "[^/]*")


@functools.cache
def _matcher(watch: Watch) -> Callable[[str], bool]:
    if watch.scope is Scope.ENTRY:
        entry = re.compile(_regex(watch.path), re.DOTALL)
        return lambda path: entry.fullmatch(path) is not None
    tree = re.compile(_regex(watch.path) + "(?P<rest>/.*)?", re.DOTALL)
    excluded = (
        re.compile("(?:" + "|".join(_regex(e) for e in watch.excluding) + ")(?:/.*)?", re.DOTALL)
        if watch.excluding
        else None
    )

    def matches(path: str) -> bool:
        m = tree.fullmatch(path)
        if m is None:
            return False
        rest = m.group("rest")
        return not (excluded is not None and rest and excluded.fullmatch(rest[1:]))

    return matches


@dataclass(frozen=True, slots=True)
class Entry:
    collector: Collector
    comparator: Comparator
    snapshot_paths: tuple[str, ...]
    watch: tuple[Watch, ...] = ()  # changes here re-capture this category in realtime
    polled: tuple[Watch, ...] = ()  # read by the collector, seen only by the category's interval
    flake: bool = False  # the flake's directory (known at run time) belongs to this row

    def watches(self, host_path: str) -> bool:
        return any(w.matches(host_path) for w in self.watch)

    def polls(self, host_path: str) -> bool:
        return any(w.matches(host_path) for w in self.polled)


def _files(paths: Iterable[str]) -> tuple[Watch, ...]:
    return tuple(Watch(p, Scope.ENTRY) for p in paths if not p.startswith(PSEUDO_FS))


def _pseudo(paths: Iterable[str]) -> tuple[Watch, ...]:
    return tuple(Watch(p, Scope.ENTRY) for p in paths if p.startswith(PSEUDO_FS))


CURRENT = Watch(live_generation.CURRENT, Scope.ENTRY, switch=True)

GENERATION_WATCH = (
    CURRENT,
    Watch(live_generation.BOOTED, Scope.ENTRY),
    Watch(live_generation.SYSTEM_PROFILE + "*", Scope.ENTRY, switch=True),  # system, system-<n>-link
)
PACKAGES_WATCH = (
    CURRENT,  # its sw/ is the declared environment
    Watch(packages.USER_ENVS),  # users.users.<n>.packages
    Watch(packages.PROFILES),  # nix-env into root's or a per-user profile
    Watch(f"{HOME}/.local/state/nix/profiles"),  # nix profile install (XDG profiles)
)
PACKAGES_POLLED = (
    # the list of homes; a profile made after the start is adopted when its directory appears
    Watch(accounts.PASSWD, Scope.ENTRY),
    Watch(f"{HOME}/.nix-profile", Scope.ENTRY),  # a link in a home directory (homes are not watched)
)
SERVICES_WATCH = tuple(Watch(d) for d in services.WRITABLE_DIRS)  # incl. /run/systemd/system.control
SERVICES_POLLED = (
    Watch(services.BUS_SOCKET, Scope.ENTRY),  # systemd's runtime state, over D-Bus
    # the managed /etc/systemd/system leads through /etc/static into the store: activation replaces
    # the link together with /run/current-system, whose switch rescans everything
    Watch(etc.STATIC, Scope.ENTRY),
)
ETC_WATCH = (Watch("/etc", excluding=live_etc.SKIP + live_etc.ALLOW),)
# Allowlisted entries are written by activation and the running system: never imperative drift,
# compared only where the closure ships one, which the scan interval covers.
ETC_POLLED = (
    *(Watch(f"/etc/{name}") for name in live_etc.ALLOW),
    # system.etc.overlay: the mount and the image /etc is made of (the scan interval sees them), and
    # the upper directory, whose changes are the writes to /etc that the /etc watch sees already
    *_pseudo((mounts.MOUNTINFO, mounts.HOST_MOUNTINFO)),
    Watch(layout.METADATA_IMAGE_LINK, Scope.ENTRY),
    Watch(layout.OVERLAY_UPPER),
)


TABLE: Mapping[Category, Entry] = {
    Category.GENERATION: Entry(
        generation.capture, c_generation.compare, generation.SNAPSHOT_PATHS, watch=GENERATION_WATCH
    ),
    Category.PACKAGES: Entry(
        packages.capture, c_packages.compare, packages.SNAPSHOT_PATHS, watch=PACKAGES_WATCH, polled=PACKAGES_POLLED
    ),
    Category.SERVICES: Entry(
        services.capture, c_services.compare, services.SNAPSHOT_PATHS, watch=SERVICES_WATCH, polled=SERVICES_POLLED
    ),
    Category.SERVICE_CONFIG: Entry(
        services.capture,
        c_service_config.compare,
        services.SNAPSHOT_PATHS,
        watch=SERVICES_WATCH,
        polled=SERVICES_POLLED,
    ),
    Category.USERS: Entry(users.capture, c_users.compare, users.SNAPSHOT_PATHS, watch=_files(users.SNAPSHOT_PATHS)),
    Category.ETC: Entry(etc.capture, c_etc.compare, etc.SNAPSHOT_PATHS, watch=ETC_WATCH, polled=ETC_POLLED),
    Category.NETWORK: Entry(
        network.capture,
        c_network.compare,
        network.SNAPSHOT_PATHS,
        watch=_files(network.SNAPSHOT_PATHS),
        polled=_pseudo(network.SNAPSHOT_PATHS),
    ),
    # nft and the socket table are not files: their scan interval is the only check
    Category.FIREWALL: Entry(firewall.capture, c_firewall.compare, firewall.SNAPSHOT_PATHS),
    Category.EXPOSURE: Entry(exposure.capture, c_exposure.compare, exposure.SNAPSHOT_PATHS),
    Category.MOUNTS: Entry(
        mounts.capture,
        c_mounts.compare,
        mounts.SNAPSHOT_PATHS,
        # the kernel's mount table, and the device links (/dev/disk/by-*) its sources resolve to
        polled=(*_pseudo((mounts.MOUNTINFO, mounts.HOST_MOUNTINFO, mounts.SWAPS)), Watch("/dev")),
    ),
    Category.REPO: Entry(repo.capture, c_repo.compare, repo.SNAPSHOT_PATHS, flake=True),
}
