"""The bundled demo host: a small web server as its flake declares it, and a dozen drifts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost

# `nixdrift demo --layout NAME`: (etc, accounts, init) as the nixpkgs profiles set them
LAYOUTS: dict[str, tuple[str, str, str]] = {
    "classic": ("classic", "perl", "scripted"),  # setup-etc.pl and update-users-groups.pl
    "perlless": ("overlay", "userborn", "scripted"),  # profiles/perlless.nix
    "bashless": ("overlay", "userborn", "nixos-init"),  # profiles/bashless.nix (the firewall kept on)
    "immutable": ("overlay-immutable", "userborn", "nixos-init"),  # system.etc.overlay.mutable = false
}


def demo_host(base: Path, name: str = "web1", layout: str = "classic") -> HostTree:
    etc, accounts, init = LAYOUTS[layout]
    host = HostTree(base, name=name, etc=etc, accounts=accounts, init=init)
    host.with_user("alice", groups=["wheel", "video"], description="Alice Admin")
    host.with_user("bob", description="Bob Developer", packages=["jq"])
    host.with_package("hello").with_package("git").with_package("htop").with_package("curl")
    host.with_service("nginx", listen=[("0.0.0.0", 80), ("0.0.0.0", 443)], description="Nginx Web Server")
    host.with_service("sshd", listen=("0.0.0.0", 22), description="SSH Daemon")
    host.with_service("postgresql", listen=("127.0.0.1", 5432), description="PostgreSQL Server")
    host.with_etc_file("motd", "Welcome to web1. Managed by NixOS: edit the flake, not this file.\n")
    host.with_etc_copy("sudoers.d/10-deploy", "alice ALL=(ALL) NOPASSWD: /run/current-system/sw/bin/systemctl\n")
    host.with_firewall(tcp=[22, 80, 443])
    host.with_mount("/data", device="/dev/disk/by-label/data", fs_type="ext4", options=["noatime"])
    if etc != "overlay-immutable":  # resolvconf cannot write a read-only /etc (DNS is DHCP's there)
        host.with_nameservers("1.1.1.1", "9.9.9.9")
    return host


@dataclass(frozen=True, slots=True)
class Drift:
    what: str  # what the operator did, as one line
    category: str  # the category nixdrift should report it in
    plant: Callable[[BuiltHost], object]


DRIFTS: tuple[Drift, ...] = (
    Drift("nix-env -i cowsay (as alice)", "packages", lambda b: b.nix_env_install("alice", "cowsay")),
    Drift("nix profile install ripgrep (as bob)", "packages", lambda b: b.nix_profile_install("bob", "ripgrep")),
    Drift("hand edit of the managed /etc/motd", "etc", lambda b: b.edit_etc("motd", "Back at 5. -- alice\n")),
    Drift(
        "new /etc/sudoers.d/99-mallory",
        "etc",
        lambda b: b.add_etc_file("sudoers.d/99-mallory", "mallory ALL=(ALL) NOPASSWD: ALL\n", 0o440),
    ),
    Drift("useradd mallory && usermod -aG wheel mallory", "users", lambda b: b.add_user("mallory", groups=("wheel",))),
    Drift(
        "systemctl enable --runtime --now cryptominer.service",
        "services",
        lambda b: b.enable_unit_runtime("cryptominer.service"),
    ),
    Drift("systemctl edit --runtime nginx.service", "service-config", lambda b: b.add_dropin("nginx.service")),
    Drift("nc -l 0.0.0.0 4444", "exposure", lambda b: b.listen("0.0.0.0", 4444, process="nc")),
    Drift("nixos-firewall-tool open tcp 4444", "firewall", lambda b: b.open_port(4444)),
    Drift("hand edit of /etc/resolv.conf (nameserver 8.8.8.8)", "network", lambda b: b.set_nameserver("8.8.8.8")),
    Drift("mount -t tmpfs tmpfs /mnt/scratch", "mounts", lambda b: b.mount_tmpfs("/mnt/scratch")),
    Drift("uncommitted edit of host.nix in /etc/nixos", "repo", lambda b: b.commit_dirty_edit()),
    Drift("switched to a new generation without rebooting", "generation", lambda b: b.reboot_pending()),
)


def build_demo(base: Path, progress: Callable[[str], None] | None = None) -> BuiltHost:
    say = progress or (lambda _m: None)
    say(f"building the demo host in {base}")
    built = demo_host(base).build()
    plant(built, say)
    return built


def plant(built: BuiltHost, say: Callable[[str], None]) -> int:
    """Plant every drift the layout lets an operator make; a read-only /etc refuses some (said)."""
    planted = 0
    for drift in DRIFTS:
        try:
            drift.plant(built)
        except OSError as exc:
            say(f"not planted ({exc.strerror or exc}): {drift.what}")
            continue
        say(f"planting: {drift.what}")
        planted += 1
    return planted


@contextmanager
def demo_with_layout(base: Path, layout: str, progress: Callable[[str], None]) -> Iterator[tuple[BuiltHost, int]]:
    """The demo host of a layout, its /etc mounted as that layout mounts it (an overlay in a private
    mount namespace, needs root), with the drifts planted; unmounted on exit."""
    progress(f"building the demo host ({layout} layout) in {base}")
    built = demo_host(base, layout=layout).build()
    with built.mounted_etc():
        yield built, plant(built, progress)
