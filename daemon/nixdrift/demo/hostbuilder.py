"""Fixture NixOS hosts: declare a host in a few lines, build it with real nix, get a root tree.

    host = HostTree(tmp, name="web1")
    host.with_user("alice", groups=["wheel", "video"]).with_package("hello")
    host.with_service("nginx", wanted_by=["multi-user.target"], listen=("0.0.0.0", 80))
    built = host.build()        # built.flake: a committed git flake, built.root: the host's /

`build()` writes the flake (a miniature NixOS in `flake/nixos.nix` evaluating a NixOS-style
`host.nix`) into ROOT/etc/nixos, commits it, runs ONE `nix build` of its toplevel and then lays out
the root tree as NixOS activation would (see activate.py). The returned BuiltHost plants drift as
an operator would (see planters.py).
"""

from __future__ import annotations

import grp
import json
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nixdrift.declared.nix import NIX
from nixdrift.demo import nixexpr
from nixdrift.demo.nixexpr import Raw
from nixdrift.errors import NixdriftError
from nixdrift.process import run

if TYPE_CHECKING:
    from nixdrift.demo.planters import BuiltHost

# versions nixpkgs had when this was written; anything else is 1.0
VERSIONS: Mapping[str, str] = {
    "hello": "2.12.1",
    "cowsay": "3.8.4",
    "htop": "3.3.0",
    "ripgrep": "14.1.1",
    "curl": "8.11.1",
    "git": "2.47.1",
    "vim": "9.1.0990",
    "nginx": "1.26.2",
    "jq": "1.7.1",
    "tmux": "3.5a",
    "netcat": "1.10",
}


def _build_user_options() -> tuple[str, ...]:
    """Root with Debian's nix-bin alone (no `nixbld` group, no nix.conf) cannot build with build
    users, which Nix asks for by default: build as root then, as a single-user install does."""
    if os.geteuid() != 0:
        return ()
    try:
        grp.getgrnam("nixbld")
    except KeyError:
        return ("--option", "build-users-group", "")
    return ()


BUILD_USERS = _build_user_options()
# substituters first: planters pass NIX_OPTIONS[:3] and BUILD_USERS (profiles are built, not fetched)
NIX_OPTIONS = (
    "--option",
    "substituters",
    "",
    "--option",
    "sandbox",
    "false",
    *BUILD_USERS,
    "--max-jobs",
    "auto",
)
GIT_ID = (
    "-c",
    "user.name=nixdrift fixture",
    "-c",
    "user.email=fixture@nixdrift.invalid",
    "-c",
    "init.defaultBranch=main",
)


def nix_system() -> str:
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
    return f"{machine.get(platform.machine().lower(), platform.machine().lower())}-linux"


def flake_files() -> dict[str, str]:
    """The miniature NixOS shipped as package data (lib.nix, nixos.nix)."""
    base = resources.files("nixdrift.demo").joinpath("flake")
    return {name: base.joinpath(name).read_text() for name in ("lib.nix", "nixos.nix")}


def git(repo: Path, *args: str) -> str:
    return run(["git", *GIT_ID, "-C", str(repo), *args], timeout=120).stdout


@dataclass(frozen=True, slots=True)
class Listener:
    proto: str
    address: str
    port: int
    process: str
    unit: str | None


@dataclass(slots=True)
class Declaration:
    """Everything a HostTree declares, NixOS-shaped (rendered into host.nix)."""

    name: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    packages: list[Raw] = field(default_factory=list)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    etc: dict[str, Any] = field(default_factory=dict)
    firewall: dict[str, Any] = field(default_factory=dict)
    nftables: bool = False
    mounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    swaps: list[dict[str, Any]] = field(default_factory=list)
    nameservers: list[str] = field(default_factory=list)
    mutable_users: bool = True
    build_users: int = 32
    version: str | None = None
    lets: dict[str, Raw] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    etc_layout: str = "classic"  # "classic" | "overlay" | "overlay-immutable"
    accounts: str = "perl"  # "perl" | "userborn" | "sysusers"
    init: str = "scripted"  # "scripted" | "nixos-init"

    def layout_options(self) -> dict[str, object]:
        """The options the real modules read (etc-activation.nix, userborn.nix, sysusers.nix, nixos-init.nix)."""
        cfg: dict[str, object] = {}
        if self.etc_layout != "classic":
            cfg["system.etc.overlay.enable"] = True
            cfg["system.etc.overlay.mutable"] = self.etc_layout == "overlay"
        if self.accounts == "userborn":
            cfg["services.userborn.enable"] = True
        elif self.accounts == "sysusers":
            cfg["systemd.sysusers.enable"] = True
        if self.init == "nixos-init":
            cfg["system.nixos-init.enable"] = True
        return cfg

    def host_nix(self) -> str:
        cfg: dict[str, object] = {"networking.hostName": self.name}
        if self.nameservers:
            cfg["networking.nameservers"] = self.nameservers
        if self.firewall:
            cfg["networking.firewall"] = self.firewall
        if self.nftables:
            cfg["networking.nftables.enable"] = True
        cfg["users.mutableUsers"] = self.mutable_users
        cfg.update(self.layout_options())
        cfg["users.users"] = self.users
        cfg["users.groups"] = self.groups
        cfg["environment.systemPackages"] = self.packages
        cfg["environment.etc"] = self.etc
        cfg["systemd.services"] = self.services
        cfg["fileSystems"] = self.mounts
        cfg["swapDevices"] = self.swaps
        cfg["nix.nrBuildUsers"] = self.build_users
        if self.version:
            cfg["system.nixos.version"] = self.version
        body = "".join(f"  {key} = {nixexpr.render(value, 1)};\n" for key, value in cfg.items())
        lets = "".join(f"  {name} = {value.text};\n" for name, value in self.lets.items())
        head = f"let\n{lets}in\n" if lets else ""
        return (
            "# The host's NixOS configuration (written by nixdrift's fixture builder).\n"
            f"{{ pkgs, ... }}:\n{head}{{\n{body}}}\n"
        )


def flake_nix(name: str, system: str) -> str:
    return (
        "{\n"
        f"  description = {nixexpr.string('NixOS configuration of ' + name)};\n"
        "  outputs = { self }:\n"
        f"    let lib = import ./lib.nix {{ system = {nixexpr.string(system)}; }};\n"
        "    in {\n"
        f"      nixosConfigurations.{nixexpr.attr(name)} = import ./nixos.nix {{ inherit lib; }} (import ./host.nix);\n"
        "    };\n"
        "}\n"
    )


LAYOUT_ETC = ("classic", "overlay", "overlay-immutable")
LAYOUT_ACCOUNTS = ("perl", "userborn", "sysusers")
LAYOUT_INIT = ("scripted", "nixos-init")

FLAKE_LOCK = json.dumps({"nodes": {"root": {}}, "root": "root", "version": 7}, indent=2) + "\n"


class HostTree:
    """A NixOS host, declared in a few lines."""

    def __init__(
        self,
        base: Path | str,
        name: str = "web1",
        *,
        build_users: int = 32,
        etc: str = "classic",
        accounts: str = "perl",
        init: str = "scripted",
    ) -> None:
        self.base = Path(base)
        if etc not in LAYOUT_ETC or accounts not in LAYOUT_ACCOUNTS or init not in LAYOUT_INIT:
            raise NixdriftError(f"unknown layout etc={etc!r} accounts={accounts!r} init={init!r}")
        if init == "nixos-init" and (etc == "classic" or accounts == "perl"):
            # nixos-init.nix's assertions
            raise NixdriftError("nixos-init needs system.etc.overlay and userborn or sysusers")
        if etc == "overlay-immutable" and accounts == "perl":
            raise NixdriftError("an immutable /etc needs userborn or sysusers (etc-activation.nix)")
        self.decl = Declaration(name=name, build_users=build_users, etc_layout=etc, accounts=accounts, init=init)

    @property
    def name(self) -> str:
        return self.decl.name

    # ---- declarations ----
    def with_user(
        self,
        name: str,
        groups: Iterable[str] = (),
        *,
        uid: int | None = None,
        system: bool = False,
        group: str | None = None,
        home: str | None = None,
        packages: Iterable[str] = (),
        description: str = "",
        hashed_password: bool = False,
    ) -> HostTree:
        user: dict[str, Any] = {"isSystemUser": True} if system else {"isNormalUser": True}
        if system:
            user["group"] = group or name
            if (group or name) not in self.decl.groups:
                self.with_group(group or name)
        elif group:
            user["group"] = group
        if uid is not None:
            user["uid"] = uid
        if home:
            user["home"] = home
        if description:
            user["description"] = description
        extra = list(groups)
        if extra:
            user["extraGroups"] = extra
        for g in extra:
            if g not in BASE_GROUPS and g not in self.decl.groups:
                self.with_group(g)
        if packages:
            user["packages"] = [self._package(p) for p in packages]
        if hashed_password:
            # clearly not a real password hash: the fixture never holds a secret
            user["hashedPassword"] = "$6$nixdrift-fixture$not-a-real-hash"
        self.decl.users[name] = user
        return self

    def with_group(self, name: str, gid: int | None = None, members: Iterable[str] = ()) -> HostTree:
        group: dict[str, Any] = {}
        if gid is not None:
            group["gid"] = gid
        if members:
            group["members"] = list(members)
        self.decl.groups[name] = group
        return self

    def with_mutable_users(self, mutable: bool) -> HostTree:
        self.decl.mutable_users = mutable
        return self

    @staticmethod
    def _package(name: str, version: str | None = None) -> Raw:
        return nixexpr.package(name, version or VERSIONS.get(name, "1.0"))

    def with_package(self, name: str, version: str | None = None) -> HostTree:
        self.decl.packages.append(self._package(name, version))
        return self

    def with_service(
        self,
        name: str,
        wanted_by: Sequence[str] = ("multi-user.target",),
        *,
        listen: tuple[str, int] | list[tuple[str, int]] | None = None,
        enable: bool = True,
        process: str | None = None,
        proto: str = "tcp",
        description: str | None = None,
    ) -> HostTree:
        exec_start = f"/run/current-system/sw/bin/{process or name}"
        self.decl.services[name] = {
            "enable": enable,
            "description": description or name,
            "wantedBy": list(wanted_by),
            "serviceConfig": {"ExecStart": exec_start},
        }
        pairs = [listen] if isinstance(listen, tuple) else list(listen or [])
        for address, port in pairs:
            self.decl.listeners.append(Listener(proto, str(address), int(port), process or name, f"{name}.service"))
        return self

    def with_etc_file(self, target: str, text: str, mode: str = "symlink") -> HostTree:
        entry: dict[str, Any] = {"text": text}
        if mode != "symlink":
            entry["mode"] = mode
        self.decl.etc[target] = entry
        return self

    def with_etc_copy(
        self, target: str, text: str, mode: str = "0440", user: str = "+0", group: str = "+0"
    ) -> HostTree:
        self.decl.etc[target] = {"text": text, "mode": mode, "user": user, "group": group}
        return self

    def with_etc_tree(self, prefix: str, files: Mapping[str, str]) -> HostTree:
        """Many etc entries sourced from ONE store derivation (scale fixtures: thousands of files)."""
        var = f"tree{len(self.decl.lets)}"
        listing = nixexpr.render([{"path": p, "text": t} for p, t in sorted(files.items())], 1)
        self.decl.lets[var] = Raw(f"pkgs.fileTree {nixexpr.string('etc-' + var)} {listing}")
        for path in sorted(files):
            inner = nixexpr.string("/" + path)[1:-1]
            self.decl.etc[f"{prefix.strip('/')}/{path}"] = {"source": Raw(f'"${{{var}}}{inner}"')}
        return self

    def with_firewall(
        self,
        tcp: Iterable[int] = (),
        udp: Iterable[int] = (),
        *,
        tcp_ranges: Iterable[tuple[int, int]] = (),
        udp_ranges: Iterable[tuple[int, int]] = (),
        enable: bool = True,
        backend: str = "iptables",
        interfaces: Mapping[str, Mapping[str, Iterable[int]]] | None = None,
    ) -> HostTree:
        fw: dict[str, Any] = {"enable": enable, "allowedTCPPorts": list(tcp), "allowedUDPPorts": list(udp)}
        if tcp_ranges:
            fw["allowedTCPPortRanges"] = [{"from": a, "to": b} for a, b in tcp_ranges]
        if udp_ranges:
            fw["allowedUDPPortRanges"] = [{"from": a, "to": b} for a, b in udp_ranges]
        if interfaces:
            fw["interfaces"] = {
                i: {"allowedTCPPorts": list(p.get("tcp", ())), "allowedUDPPorts": list(p.get("udp", ()))}
                for i, p in interfaces.items()
            }
        self.decl.firewall = fw
        self.decl.nftables = backend == "nftables"
        return self

    def with_mount(
        self, mount_point: str, device: str, fs_type: str = "ext4", options: Sequence[str] | None = None
    ) -> HostTree:
        fs: dict[str, Any] = {"device": device, "fsType": fs_type}
        if options:
            fs["options"] = list(options)
        self.decl.mounts[mount_point] = fs
        return self

    def with_swap(self, device: str) -> HostTree:
        self.decl.swaps.append({"device": device})
        return self

    def with_nameservers(self, *servers: str) -> HostTree:
        self.decl.nameservers = list(servers)
        return self

    def with_version(self, version: str) -> HostTree:
        self.decl.version = version
        return self

    # ---- building ----
    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def flake(self) -> Path:
        """Where the host keeps its flake on disk: /etc/nixos; on an overlay /etc that is the upper
        directory (a user's /etc/nixos is written after boot), and an immutable /etc has none, so
        the flake lives in root's home."""
        if self.decl.etc_layout == "overlay":
            return self.root / ".rw-etc" / "upper" / "nixos"
        if self.decl.etc_layout == "overlay-immutable":
            return self.root / "root" / "nixos"
        return self.root / "etc" / "nixos"

    def write_flake(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        files = {**flake_files(), "flake.nix": flake_nix(self.name, nix_system())}
        files["host.nix"] = self.decl.host_nix()
        files["flake.lock"] = FLAKE_LOCK
        for name, text in files.items():
            (directory / name).write_text(text)

    def build(self, *, remote: bool = True) -> BuiltHost:
        from nixdrift.demo.activate import activate
        from nixdrift.demo.planters import BuiltHost

        if self.root.exists():
            raise NixdriftError(f"{self.root} exists already: build each HostTree once")
        self.write_flake(self.flake)
        init_repo(self.flake, self.base / "origin.git" if remote else None)
        toplevel, spec = build_toplevel(f"git+file://{self.flake}", self.name)
        state = activate(self.root, toplevel, spec, self.decl.listeners)
        return BuiltHost(tree=self, toplevel=toplevel, spec=spec, state=state)


BASE_GROUPS = frozenset(
    {
        "root",
        "wheel",
        "kmem",
        "tty",
        "disk",
        "audio",
        "floppy",
        "uucp",
        "lp",
        "cdrom",
        "tape",
        "video",
        "dialout",
        "utmp",
        "adm",
        "systemd-journal",
        "keys",
        "users",
        "input",
        "kvm",
        "render",
        "sgx",
        "shadow",
        "nixbld",
        "nogroup",
    }
)


def init_repo(directory: Path, origin: Path | None) -> None:
    """A git repository with everything committed, as a user's /etc/nixos is (optionally pushed)."""
    git(directory, "init", "-q")
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", "Initial configuration")
    if origin is not None:
        run(["git", *GIT_ID, "init", "-q", "--bare", str(origin)], timeout=60)
        git(directory, "remote", "add", "origin", str(origin))
        git(directory, "push", "-q", "-u", "origin", "HEAD")


def build_toplevel(flake_ref: str, name: str) -> tuple[str, dict[str, Any]]:
    """One `nix build` of the host's toplevel (and the activation spec next to it)."""
    attr = f"nixosConfigurations.{nixexpr.string(name)}.config.system.build"
    argv = [*NIX, "build", *NIX_OPTIONS, "--no-link", "--json"]
    argv += [f"{flake_ref}#{attr}.toplevel", f"{flake_ref}#{attr}.fixtureSpec"]
    out = json.loads(run(argv, timeout=1800).stdout)
    paths = sorted((str(entry["outputs"]["out"]) for entry in out), key=lambda p: p.endswith(".json"))
    toplevel, spec_path = paths  # nix does not keep the installables' order
    spec = json.loads(Path(spec_path).read_text())
    return toplevel, spec


_PACKAGES: dict[tuple[str, str], str] = {}


def build_package(pname: str, version: str | None = None) -> str:
    """A package's store path, built once per process (same derivation as in a host's flake)."""
    version = version or VERSIONS.get(pname, "1.0")
    key = (pname, version)
    if key not in _PACKAGES:
        lib = resources.files("nixdrift.demo").joinpath("flake").joinpath("lib.nix")
        expr = (
            f"(import {nixexpr.string(str(lib))} {{ system = {nixexpr.string(nix_system())}; }})"
            f".pkgs.mkPkg {{ pname = {nixexpr.string(pname)}; version = {nixexpr.string(version)}; }}"
        )
        argv = ["nix-build", *NIX_OPTIONS, "--no-out-link", "-E", expr]
        _PACKAGES[key] = run(argv, timeout=600).stdout.strip().splitlines()[-1]
    return _PACKAGES[key]
