"""Generation: the running system against the declared one, the booted one and the system profile."""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path
from typing import Any

import pytest

from nixdrift.capture import generation
from nixdrift.compare import generation as c_generation
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Category, FlakeInfo, Kind, Severity
from nixdrift.rootfs import Root


def store(name: str) -> str:
    return f"/nix/store/{hashlib.sha256(name.encode()).hexdigest()[:32]}-{name}"


def declared(toplevel: str | None, ref: str = "/etc/nixos", host: str = "web") -> DeclaredState:
    return DeclaredState.from_json(host, FlakeInfo(reference=ref), {"toplevel": toplevel})


class Host:
    """A fixture tree that looks like NixOS: systems in the store, /run links, the system profile."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def link(self, path: str, target: str) -> Host:
        where = self.root / path.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        if where.is_symlink():
            where.unlink()
        os.symlink(target, where)
        return self

    def system(self, name: str, kernel: str = "linux-6.6") -> str:
        """A toplevel below the root, with the links nixos-rebuild compares for a reboot."""
        top = store(name)
        (self.root / top.lstrip("/")).mkdir(parents=True)
        self.link(f"{top}/kernel", f"{store(kernel)}/bzImage")
        self.link(f"{top}/initrd", f"{store('initrd-' + kernel)}/initrd")
        self.link(f"{top}/kernel-modules", store(kernel + "-modules"))
        return top

    def running(self, current: str, booted: str | None = None, profile: int | None = None) -> Host:
        self.link("/run/current-system", current)
        self.link("/run/booted-system", booted or current)
        self.link(f"/nix/var/nix/profiles/system-{profile or 1}-link", current)
        return self.link("/nix/var/nix/profiles/system", f"system-{profile or 1}-link")

    def generation(self, number: int, toplevel: str, make_current: bool = False) -> Host:
        self.link(f"/nix/var/nix/profiles/system-{number}-link", toplevel)
        return self.link("/nix/var/nix/profiles/system", f"system-{number}-link") if make_current else self

    def check(self, decl: DeclaredState) -> dict[str, Any]:
        section = generation.capture(Root.of(self.root), decl)
        return {f.id: f for f in c_generation.compare(decl, section)}


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_a_host_running_what_it_declares_has_no_drift(host: Host) -> None:
    top = host.system("nixos-system-web-24.05")
    host.running(top)
    section = generation.capture(Root.of(host.root), declared(top))
    assert section.data is not None
    assert (section.data.current, section.data.booted, section.data.profile) == (top, top, top)
    assert section.data.declared_built
    assert c_generation.compare(declared(top), section) == ()


def test_running_another_system_than_declared(host: Host) -> None:
    old, new = host.system("nixos-system-web-old"), host.system("nixos-system-web-new")
    host.running(old, profile=7)
    [found] = host.check(declared(new, ref="/srv/my flake", host="web")).values()
    assert found.id == "generation/current-system/declared"
    assert found.severity is Severity.HIGH
    assert found.kind is Kind.CHANGED
    assert (found.expected, found.actual) == (new, f"{old} (generation 7)")
    assert found.fix.command == "nixos-rebuild switch --flake '/srv/my flake#web'"
    assert shlex.split(found.fix.command)[-1] == "/srv/my flake#web"
    assert not found.fix.safe
    assert found.evidence["declared_in_store"] == "yes"
    assert "never been built" not in found.message


def test_a_declared_system_never_built_says_so(host: Host) -> None:
    old = host.system("nixos-system-web-old")
    host.running(old)
    never = store("nixos-system-web-never-built")
    found = host.check(declared(never))["generation/current-system/declared"]
    assert found.evidence["declared_in_store"] == "no"
    assert found.evidence["also"] == "generation-not-built"
    assert "never been built" in found.message


def test_a_declared_system_in_the_local_store_counts_as_built(host: Host, tmp_path: Path) -> None:
    # the toplevel is not below the root but in this machine's store (rootfs falls back to it)
    local = next(p for p in Path("/nix/store").iterdir() if p.is_dir()) if Path("/nix/store").is_dir() else None
    if local is None:
        pytest.skip("no local /nix/store")
    host.running(host.system("nixos-system-web-old"))
    found = host.check(declared(str(local)))["generation/current-system/declared"]
    assert found.evidence["declared_in_store"] == "yes"


def test_a_new_kernel_waits_for_a_reboot(host: Host) -> None:
    booted = host.system("nixos-system-web-1", kernel="linux-6.6")
    current = host.system("nixos-system-web-2", kernel="linux-6.9")
    host.running(current, booted=booted)
    [found] = host.check(declared(current)).values()
    assert found.id == "generation/booted-system/reboot"
    assert found.fix.command == "systemctl reboot"
    assert not found.fix.safe
    assert (found.expected, found.actual) == (current, booted)


def test_a_switch_that_keeps_the_kernel_needs_no_reboot(host: Host) -> None:
    booted = host.system("nixos-system-web-1", kernel="linux-6.6")
    current = host.system("nixos-system-web-2", kernel="linux-6.6")
    host.running(current, booted=booted)
    assert host.check(declared(current)) == {}


def test_without_the_closure_booted_and_current_toplevels_are_compared(host: Host) -> None:
    # a snapshot that copied only the links: the toplevels themselves are not readable
    booted, current = store("nixos-system-web-1"), store("nixos-system-web-2")
    host.running(current, booted=booted)
    assert "generation/booted-system/reboot" in host.check(declared(current))


def test_a_profile_that_points_elsewhere_changes_the_next_boot(host: Host) -> None:
    current = host.system("nixos-system-web-1")
    staged = host.system("nixos-system-web-2")
    host.running(current, profile=1).generation(2, staged, make_current=True)
    [found] = host.check(declared(current)).values()
    assert found.id == "generation/system-profile/current"
    assert found.actual == f"{staged} (generation 2)"
    assert found.expected == f"{current} (generation 1)"
    assert found.fix.command.startswith("nixos-rebuild switch --flake")


def test_generations_are_listed_in_order(host: Host) -> None:
    current = host.system("nixos-system-web-3")
    host.generation(10, store("nixos-system-web-10")).generation(2, store("nixos-system-web-2"))
    host.running(current, profile=3)
    section = generation.capture(Root.of(host.root), declared(current))
    assert section.data is not None
    assert [g.number for g in section.data.generations] == [2, 3, 10]
    assert section.data.profile_number == 3
    assert section.data.current_number == 3


def test_no_declared_toplevel_is_unavailable_not_clean(host: Host) -> None:
    host.running(host.system("nixos-system-web-1"))
    section = generation.capture(Root.of(host.root), declared(None))
    assert section.data is None
    assert section.category is Category.GENERATION
    assert "declares no system.build.toplevel" in (section.unavailable or "")


def test_a_tree_without_current_system_is_unavailable(host: Host) -> None:
    section = generation.capture(Root.of(host.root), declared(store("nixos-system-web-1")))
    assert section.data is None
    assert "/run/current-system" in (section.unavailable or "")


def test_snapshot_paths_cover_what_is_read() -> None:
    assert set(generation.SNAPSHOT_PATHS) >= {"/run/current-system", "/run/booted-system", "/nix/var/nix/profiles"}
