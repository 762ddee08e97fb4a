"""The daemon tests' host: a small NixOS-shaped tree built by HostTree (real nix build and eval).

Managed symlinks (hosts, issue, ssh/sshd_config), managed copies listed in /etc/.clean (motd,
nanorc, inputrc, bashrc), users root and alice, and nix-env installs into root's profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost

COPIES = ("motd", "nanorc", "inputrc", "bashrc")


@dataclass(frozen=True)
class Host:
    built: BuiltHost

    @property
    def root(self) -> Path:
        return self.built.root

    @property
    def flake(self) -> Path:
        return self.built.flake

    def etc(self, rel: str) -> Path:
        return self.root / "etc" / rel

    def nix_env_install(self, name: str) -> None:
        pname, _, version = name.partition("-")
        self.built.nix_env_install("root", pname, version or None)


def build_host(base: Path) -> Host:
    tree = HostTree(base / "host", name="demo")
    tree.with_user("alice", groups=["video"])
    tree.with_etc_file("hosts", "127.0.0.1 localhost\n")
    tree.with_etc_file("issue", "Welcome to NixOS\n")
    tree.with_etc_file("ssh/sshd_config", "PermitRootLogin no\n")
    for rel in COPIES:
        tree.with_etc_copy(rel, f"# {rel} from the flake\n", mode="0644")
    return Host(tree.build())
