"""The bundled demo host: a small web server as its flake declares it, and a dozen drifts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost


def demo_host(base: Path, name: str = "web1") -> HostTree:
    host = HostTree(base, name=name)
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
    for drift in DRIFTS:
        say(f"planting: {drift.what}")
        drift.plant(built)
    return built
