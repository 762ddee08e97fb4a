"""A small NixOS-shaped host tree and flake for daemon tests (real nix build, real nix eval).

Until `nixdrift.demo.hostbuilder.HostTree` is finished this lays out by hand what activation
would: /etc/static -> a store path built by nix, managed symlinks, managed copies listed in
/etc/.clean, passwd/group, a real unit directory and a root nix profile.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path

NIX = ["nix", "--extra-experimental-features", "nix-command flakes"]
BUILD_OPTS = ["--option", "substituters", "", "--option", "sandbox", "false"]

FILES_BUILDER = r"""
/bin/mkdir -p $out/ssh
printf '127.0.0.1 localhost\n' > $out/hosts
printf 'Welcome to NixOS\n' > $out/issue
printf 'hello from the flake\n' > $out/motd
printf 'set nowrap\n' > $out/nanorc
printf '# inputrc\n' > $out/inputrc
printf '# bashrc\n' > $out/bashrc
printf 'PermitRootLogin no\n' > $out/ssh/sshd_config
"""

FLAKE = """
{
  outputs = { self }: let
    system = "@SYSTEM@";
    files = derivation {
      name = "etc-files"; inherit system; builder = "/bin/sh"; args = [ "-c" (builtins.readFile ./files.sh) ];
    };
    etc = derivation { name = "etc"; inherit system; builder = "/bin/sh"; args = [ "-c" ''
      /bin/mkdir -p $out/etc/ssh $out/etc/systemd/system
      for f in hosts issue ssh/sshd_config motd nanorc inputrc bashrc; do /bin/ln -s ${files}/$f $out/etc/$f; done
      for f in motd nanorc inputrc bashrc; do
        printf '0644\\n' > $out/etc/$f.mode; printf '+0\\n' > $out/etc/$f.uid; printf '+0\\n' > $out/etc/$f.gid
      done
    '' ]; };
    toplevel = derivation {
      name = "nixos-system-demo"; inherit system; builder = "/bin/sh";
      args = [ "-c" "/bin/mkdir $out; /bin/ln -s ${etc}/etc $out/etc" ];
    };
  in {
    nixosConfigurations.demo.config = {
      system.build.toplevel = toplevel;
      networking.hostName = "demo";
      users.mutableUsers = false;
      users.users.root = { uid = 0; group = "root"; home = "/root"; };
      users.users.alice = {
        isNormalUser = true; uid = 1000; group = "users"; extraGroups = [ "video" ]; home = "/home/alice";
      };
      users.groups = { root.gid = 0; wheel.gid = 1; users.gid = 100; video = { gid = 26; members = [ "alice" ]; }; };
      environment.etc = {
        hosts.source = "${files}/hosts";
        issue.source = "${files}/issue";
        "ssh/sshd_config".source = "${files}/ssh/sshd_config";
      } // builtins.listToAttrs (map (n: { name = n; value = { source = "${files}/${n}"; mode = "0644"; }; })
        [ "motd" "nanorc" "inputrc" "bashrc" ]);
    };
  };
}
"""


COPIES = ("motd", "nanorc", "inputrc", "bashrc")


def _build(expr: str) -> str:
    out = subprocess.run(
        ["nix-build", *BUILD_OPTS, "--no-out-link", "-E", expr], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def _derivation(name: str, script: str) -> str:
    quoted = script.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\\$out", "$out")
    return (
        f'derivation {{ name = "{name}"; system = builtins.currentSystem; builder = "/bin/sh"; '
        f'args = [ "-c" "{quoted}" ]; }}'
    )


def build_toplevel(flake: Path) -> str:
    """Build the fixture flake's toplevel (the etc tree inside it) with real nix."""
    attr = f"path:{flake}#nixosConfigurations.demo.config.system.build.toplevel"
    proc = subprocess.run(
        [*NIX, "build", *BUILD_OPTS, "--no-link", "--json", attr], check=True, capture_output=True, text=True
    )
    return str(json.loads(proc.stdout)[0]["outputs"]["out"])


@cache
def package(name: str) -> str:
    """A one-file package built by nix (for nix-env installs)."""
    return _build(_derivation(name, "/bin/mkdir -p $out/bin; printf '#!/bin/sh\\n' > $out/bin/" + name.split("-")[0]))


@dataclass(frozen=True)
class Host:
    root: Path
    flake: Path

    def etc(self, rel: str) -> Path:
        return self.root / "etc" / rel

    @property
    def root_profile(self) -> Path:
        return self.root / "nix/var/nix/profiles/per-user/root/profile"

    def nix_env_install(self, name: str) -> None:
        subprocess.run(["nix-env", "-p", str(self.root_profile), "-i", package(name)], check=True, capture_output=True)


def build_host(base: Path) -> Host:
    root = base / "root"
    flake = base / "flake"
    flake.mkdir(parents=True)
    (flake / "flake.nix").write_text(FLAKE.replace("@SYSTEM@", f"{platform.machine()}-linux"))
    (flake / "files.sh").write_text(FILES_BUILDER)
    toplevel = build_toplevel(flake)
    etc = root / "etc"
    (etc / "systemd/system").mkdir(parents=True)
    (etc / "ssh").mkdir()
    static = os.path.realpath(toplevel + "/etc")
    os.symlink(static, etc / "static")
    for rel in ("hosts", "issue", "ssh/sshd_config"):
        os.symlink(f"/etc/static/{rel}", etc / rel)
    for rel in COPIES:
        (etc / rel).write_bytes(Path(static, rel).read_bytes())
        os.chmod(etc / rel, 0o644)
    (etc / ".clean").write_text("".join(f"{rel}\n" for rel in COPIES))
    (etc / "hostname").write_text("demo\n")
    (etc / "passwd").write_text(
        textwrap.dedent("""\
        root:x:0:0:System administrator:/root:/run/current-system/sw/bin/bash
        alice:x:1000:100::/home/alice:/run/current-system/sw/bin/bash
        """)
    )
    (etc / "group").write_text("root:x:0:\nwheel:x:1:\nusers:x:100:\nvideo:x:26:alice\n")
    for d in (
        "run/systemd/system",
        "run/systemd/transient",
        "nix/var/nix/profiles/per-user/root",
        "root",
        "home/alice",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.symlink(toplevel, root / "run/current-system")
    os.symlink(toplevel, root / "run/booted-system")
    return Host(root=root, flake=flake)
