"""Every path a collector reads is watched (routed to its category) or deliberately polled.

The category table (categories.TABLE) gives each row its watch and poll lists; the watcher's trees
and the router's routes are derived from it. These tests check the derivation both ways: from the
collectors' declared path constants, and from the paths a real capture of a fixture host reads
through `Root` (traced by wrapping Root's methods).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nixdrift import pipeline
from nixdrift.capture import services
from nixdrift.categories import TABLE, Entry, Scope, Watch
from nixdrift.demo.hostbuilder import HostTree
from nixdrift.models import Category
from nixdrift.pipeline import ScanOptions
from nixdrift.rootfs import SNAPSHOT_DIR, STORE, Root
from nixdrift.service import routes
from nixdrift.service.routes import Action, Tree

HOMES = ["/root", "/home/alice"]


def ancestors_and_self(path: str) -> Iterator[str]:
    parts = path.strip("/").split("/")
    for i in range(len(parts), 0, -1):
        yield "/" + "/".join(parts[:i])


def covered(entry: Entry, path: str) -> bool:
    """Watched or polled by this row: the path itself (or, for a tree, a tree above it), a watched
    link above it (what lies behind a link changes only when the link does), or, for a directory
    the collector lists, a watch below it."""
    if entry.watches(path) or entry.polls(path):
        return True
    links = [w for w in (*entry.watch, *entry.polled) if w.scope is Scope.ENTRY]
    if any(w.matches(a) for w in links for a in ancestors_and_self(path)):
        return True
    below = [c for w in (*entry.watch, *entry.polled) for c in w.concrete(HOMES)]
    return any(c.startswith(path.rstrip("/") + "/") for c in below)


def delivered(trees: list[Tree], host_path: str) -> bool:
    """Does some watched tree report a change of this host path?"""
    parent, _, name = host_path.rpartition("/")
    for t in trees:
        if t.names:
            if parent == t.host_path and name in t.names:
                return True
        elif host_path == t.host_path or host_path.startswith(t.host_path.rstrip("/") + "/"):
            return True
    return False


# -- from the declared constants --------------------------------------------------------------


@pytest.mark.parametrize("category", list(TABLE), ids=lambda c: c.value)
def test_every_declared_path_of_a_collector_is_watched_or_polled(category: Category) -> None:
    entry = TABLE[category]
    missing = [p for p in entry.snapshot_paths if not covered(entry, p)]
    assert not missing, f"{category.value} reads {missing} but neither watches nor polls them"


def test_set_property_runtime_drop_ins_are_watched_and_routed() -> None:
    """`systemctl set-property --runtime` writes /run/systemd/system.control (issue 8, item 7)."""
    trees = routes.plan(routes.watches(), HOMES)
    assert Tree("/run/systemd/system.control", True) in trees
    action, cats = routes.route("/run/systemd/system.control/nginx.service.d/50-MemoryMax.conf", None)
    assert action is Action.CAPTURE and cats == {Category.SERVICES, Category.SERVICE_CONFIG}
    action, cats = routes.route("/etc/systemd/system.control/nginx.service.d/50-MemoryMax.conf", None)
    assert cats == {Category.SERVICES, Category.SERVICE_CONFIG}  # not etc: services owns it


@pytest.mark.parametrize("directory", services.WRITABLE_DIRS)
def test_every_writable_unit_directory_reaches_services(directory: str) -> None:
    trees = routes.plan(routes.watches(), HOMES)
    assert delivered(trees, f"{directory}/x.service")
    assert Category.SERVICES in routes.route(f"{directory}/x.service", None)[1]


def test_every_watch_is_delivered_by_a_planned_tree() -> None:
    """The watcher's trees deliver every path the router routes (no watch without an observer)."""
    trees = routes.plan(routes.watches(), HOMES)
    undelivered = [p for w in routes.watches() for p in w.concrete(HOMES) if "*" not in p and not delivered(trees, p)]
    assert not undelivered
    # a tree inside another is not watched twice
    recursive = [t.host_path for t in trees if t.recursive]
    assert not [a for a in recursive for b in recursive if a != b and a.startswith(b + "/")]


def test_lost_events_rescan_what_the_trees_feed() -> None:
    trees = routes.plan(routes.watches(), HOMES)
    by_path = {t.host_path: t for t in trees}
    assert routes.categories_of([by_path["/run/systemd/system.control"]], None) == {
        Category.SERVICES,
        Category.SERVICE_CONFIG,
    }
    assert Category.NETWORK in routes.categories_of([by_path["/run/systemd/resolve"]], None)
    assert routes.categories_of([by_path["/run"]], None) == {Category.GENERATION, Category.PACKAGES}


def test_a_wildcard_entry_outside_every_tree_is_refused() -> None:
    with pytest.raises(ValueError, match="wildcard"):
        routes.plan([Watch("/var/lib/x/*.db", Scope.ENTRY)], HOMES)


# -- from a real capture ----------------------------------------------------------------------

READS_WITHOUT_A_PATH = {"of", "captured", "is_live", "prefix"}
# Store paths never change (a new generation comes through a switch watch), and a snapshot's
# captured sources (nft.json, units.json, ...) stand for what is polled on a live root (nft, D-Bus).
IMMUTABLE_OR_CAPTURED = (STORE + "/", f"/{SNAPSHOT_DIR}/")


def trace_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the host path argument of every public Root method (whatever methods Root has), and
    every host path one returns (resolve: where the links led)."""
    seen: list[str] = []

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def traced(self: Root, *args: Any, **kwargs: Any) -> Any:
            if args and isinstance(args[0], str) and args[0].startswith("/"):
                seen.append(args[0])
            result = method(self, *args, **kwargs)
            if isinstance(result, str) and result.startswith("/"):
                seen.append(result)  # where resolve() led: a link's target is read too
            return result

        return traced

    for name, value in list(vars(Root).items()):
        if name.startswith("_") or name in READS_WITHOUT_A_PATH or not callable(value):
            continue
        monkeypatch.setattr(Root, name, wrap(value))
    return seen


@pytest.fixture(scope="module")
def fixture_host(tmp_path_factory: pytest.TempPathFactory) -> tuple[Root, Any]:
    base = tmp_path_factory.mktemp("watch-paths")
    tree = HostTree(base / "host", name="web1")
    tree.with_user("alice", groups=["wheel"]).with_service("sshd", listen=("0.0.0.0", 22))
    tree.with_etc_file("issue", "hi\n").with_etc_copy("motd", "hello\n", mode="0644").with_nameservers("10.0.0.1")
    built = tree.build()
    built.nix_env_install("root", "hello")
    root = built.root
    # a runtime drop-in, and resolv.conf as systemd-resolved links it
    (root / "run/systemd/system.control/sshd.service.d").mkdir(parents=True, exist_ok=True)
    (root / "run/systemd/system.control/sshd.service.d/50-MemoryMax.conf").write_text("[Service]\nMemoryMax=1G\n")
    (root / "run/systemd/resolve").mkdir(parents=True, exist_ok=True)
    (root / "run/systemd/resolve/stub-resolv.conf").write_text("nameserver 127.0.0.53\n")
    os.unlink(root / "etc/resolv.conf")
    os.symlink("/run/systemd/resolve/stub-resolv.conf", root / "etc/resolv.conf")
    opts = ScanOptions(flake=str(built.flake), host=built.name, root=Root.of(root), cache_dir=base / "cache")
    return Root.of(root), pipeline.load_declared(opts)


@pytest.mark.nix
def test_every_path_a_capture_reads_is_watched_or_polled(
    fixture_host: tuple[Root, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, declared = fixture_host
    seen = trace_reads(monkeypatch)
    read: dict[Category, set[str]] = {}
    for category in TABLE:
        del seen[:]
        sections = pipeline.capture(root, declared, [category])
        assert sections[category].data is not None, (category, sections[category].problems)
        read[category] = {p for p in seen if not p.startswith(IMMUTABLE_OR_CAPTURED)}
    # the trace sees the reads that matter (else this test would pass on nothing)
    assert "/run/systemd/system.control" in read[Category.SERVICES]
    assert "/etc/passwd" in read[Category.USERS]
    assert "/run/systemd/resolve/stub-resolv.conf" in read[Category.NETWORK]
    assert any(p.startswith("/nix/var/nix/profiles/per-user/root") for p in read[Category.PACKAGES])
    uncovered = {c.value: sorted(p for p in paths if not covered(TABLE[c], p)) for c, paths in read.items()}
    assert not {c: p for c, p in uncovered.items() if p}, "\n".join(f"{c}: {p}" for c, p in uncovered.items() if p)


@pytest.mark.nix
def test_every_path_a_capture_reads_is_delivered_to_the_watcher(
    fixture_host: tuple[Root, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is watched (not polled) must also be in a tree the watcher observes on this host."""
    root, declared = fixture_host
    trees = routes.candidate_trees(root, None)
    seen = trace_reads(monkeypatch)
    pipeline.capture(root, declared)
    watched = {p for p in seen if any(e.watches(p) for e in TABLE.values())}
    assert "/run/systemd/system.control" in watched
    assert not sorted(p for p in watched if not delivered(trees, p))
