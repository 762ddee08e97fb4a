"""DeclaredState: the projection's JSON parsed into frozen records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nixdrift.models import FlakeInfo


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class DeclaredPackage:
    name: str
    pname: str | None
    version: str | None
    path: str | None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeclaredPackage:
        return cls(str(d.get("name") or ""), _opt(d.get("pname")), _opt(d.get("version")), _opt(d.get("path")))


@dataclass(frozen=True, slots=True)
class DeclaredUser:
    name: str
    uid: int | None
    group: str
    extra_groups: tuple[str, ...]
    is_system: bool
    is_normal: bool
    home: str
    shell: str | None
    packages: tuple[DeclaredPackage, ...]
    has_password: bool  # presence only; the value never leaves Nix
    authorized_keys: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeclaredUser:
        uid = d.get("uid")
        return cls(
            name=str(d["name"]),
            uid=int(uid) if uid is not None else None,
            group=str(d.get("group") or ""),
            extra_groups=_strs(d.get("extraGroups")),
            is_system=bool(d.get("isSystemUser")),
            is_normal=bool(d.get("isNormalUser")),
            home=str(d.get("home") or "/var/empty"),
            shell=_opt(d.get("shell")),
            packages=tuple(DeclaredPackage.from_json(p) for p in d.get("packages") or ()),
            has_password=bool(d.get("hasPassword")),
            authorized_keys=int(d.get("authorizedKeys") or 0),
        )


@dataclass(frozen=True, slots=True)
class DeclaredGroup:
    name: str
    gid: int | None
    members: tuple[str, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeclaredGroup:
        gid = d.get("gid")
        return cls(str(d["name"]), int(gid) if gid is not None else None, _strs(d.get("members")))


@dataclass(frozen=True, slots=True)
class DeclaredUnit:
    unit: str  # full unit name, e.g. "nginx.service"
    enable: bool
    wanted_by: tuple[str, ...]
    required_by: tuple[str, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeclaredUnit:
        return cls(str(d["unit"]), bool(d.get("enable", True)), _strs(d.get("wantedBy")), _strs(d.get("requiredBy")))


@dataclass(frozen=True, slots=True)
class DeclaredEtc:
    target: str  # relative to /etc
    enable: bool
    mode: str  # "symlink" or an octal mode such as "0440" (a managed copy)
    user: str
    group: str
    source: str | None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeclaredEtc:
        return cls(
            target=str(d["target"]).lstrip("/"),
            enable=bool(d.get("enable", True)),
            mode=str(d.get("mode") or "symlink"),
            user=str(d.get("user") or "+0"),
            group=str(d.get("group") or "+0"),
            source=_opt(d.get("source")),
        )


@dataclass(frozen=True, slots=True)
class PortRange:
    start: int
    end: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end


@dataclass(frozen=True, slots=True)
class FirewallPorts:
    tcp: frozenset[int] = frozenset()
    udp: frozenset[int] = frozenset()
    tcp_ranges: tuple[PortRange, ...] = ()
    udp_ranges: tuple[PortRange, ...] = ()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FirewallPorts:
        def ranges(key: str) -> tuple[PortRange, ...]:
            return tuple(PortRange(int(r["from"]), int(r["to"])) for r in d.get(key) or ())

        return cls(
            tcp=frozenset(int(p) for p in d.get("allowedTCPPorts") or ()),
            udp=frozenset(int(p) for p in d.get("allowedUDPPorts") or ()),
            tcp_ranges=ranges("allowedTCPPortRanges"),
            udp_ranges=ranges("allowedUDPPortRanges"),
        )

    def allows(self, proto: str, port: int) -> bool:
        if proto == "tcp":
            return port in self.tcp or any(port in r for r in self.tcp_ranges)
        return port in self.udp or any(port in r for r in self.udp_ranges)


@dataclass(frozen=True, slots=True)
class DeclaredFirewall:
    enable: bool = True
    backend: str = "iptables"  # or "nftables"
    ports: FirewallPorts = field(default_factory=FirewallPorts)
    interfaces: Mapping[str, FirewallPorts] = field(default_factory=dict)
    trusted_interfaces: tuple[str, ...] = ()
    allow_ping: bool = True
    # extraCommands / extraInputRules / extraForwardRules are set: the flake adds rules of its own
    # that nixdrift cannot tell from a hand-made one
    has_extra_rules: bool = False

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeclaredFirewall:
        return cls(
            enable=bool(d.get("enable", True)),
            backend=str(d.get("backend") or "iptables"),
            ports=FirewallPorts.from_json(d),
            interfaces={str(k): FirewallPorts.from_json(v) for k, v in sorted((d.get("interfaces") or {}).items())},
            trusted_interfaces=_strs(d.get("trustedInterfaces")),
            allow_ping=bool(d.get("allowPing", True)),
            has_extra_rules=bool(d.get("hasExtraRules")),
        )

    def allows(self, proto: str, port: int, interface: str | None = None) -> bool:
        """Is this port open by declaration, globally or on the given (or any) interface?"""
        if self.ports.allows(proto, port):
            return True
        return any(p.allows(proto, port) for name, p in self.interfaces.items() if interface in (None, name))


@dataclass(frozen=True, slots=True)
class DeclaredFileSystem:
    mount_point: str
    device: str | None
    label: str | None
    fs_type: str
    options: tuple[str, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeclaredFileSystem:
        return cls(
            mount_point=str(d["mountPoint"]),
            device=_opt(d.get("device")),
            label=_opt(d.get("label")),
            fs_type=str(d.get("fsType") or "auto"),
            options=_strs(d.get("options")),
        )


@dataclass(frozen=True, slots=True)
class DeclaredSwap:
    device: str | None
    label: str | None


@dataclass(frozen=True, slots=True)
class DeclaredLayout:
    """The layout options the flake sets (see nixdrift.layout); NixOS's defaults when absent."""

    etc_overlay: bool = False  # system.etc.overlay.enable
    etc_overlay_mutable: bool = True  # system.etc.overlay.mutable
    userborn: bool = False  # services.userborn.enable
    userborn_password_files: str = "/etc"  # services.userborn.passwordFilesLocation
    sysusers: bool = False  # systemd.sysusers.enable
    nixos_init: bool = False  # system.nixos-init.enable
    etc_metadata_image: str | None = None  # system.build.etcMetadataImage (overlay hosts)
    etc_basedir: str | None = None  # system.build.etcBasedir (overlay hosts)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeclaredLayout:
        overlay = bool(d.get("etcOverlay", False))
        mutable = bool(d.get("etcOverlayMutable", True))
        default_files = "/var/lib/nixos" if overlay and not mutable else "/etc"
        return cls(
            etc_overlay=overlay,
            etc_overlay_mutable=mutable,
            userborn=bool(d.get("userborn", False)),
            userborn_password_files=str(d.get("userbornPasswordFilesLocation") or default_files),
            sysusers=bool(d.get("sysusers", False)),
            nixos_init=bool(d.get("nixosInit", False)),
            etc_metadata_image=_opt(d.get("etcMetadataImage")),
            etc_basedir=_opt(d.get("etcBasedir")),
        )


@dataclass(frozen=True, slots=True)
class DeclaredState:
    host: str
    flake: FlakeInfo
    toplevel: str | None
    nixos_version: str | None
    host_name: str
    domain: str | None
    nameservers: tuple[str, ...]
    resolved: bool
    system_packages: tuple[DeclaredPackage, ...]
    mutable_users: bool
    users: Mapping[str, DeclaredUser]
    groups: Mapping[str, DeclaredGroup]
    units: Mapping[str, DeclaredUnit]
    etc: Mapping[str, DeclaredEtc]  # keyed by target
    firewall: DeclaredFirewall
    file_systems: Mapping[str, DeclaredFileSystem]  # keyed by mount point
    swap_devices: tuple[DeclaredSwap, ...]
    local_resolver: bool = False  # networking.resolvconf.useLocalResolver: 127.0.0.1 / ::1 serve DNS
    layout: DeclaredLayout = field(default_factory=DeclaredLayout)

    @classmethod
    def from_json(cls, host: str, flake: FlakeInfo, d: Mapping[str, Any]) -> DeclaredState:
        users = (DeclaredUser.from_json(u) for u in (d.get("users") or {}).values())
        groups = (DeclaredGroup.from_json(g) for g in (d.get("groups") or {}).values())
        units = (DeclaredUnit.from_json(u) for u in d.get("units") or ())
        etc = (DeclaredEtc.from_json(e) for e in (d.get("etc") or {}).values())
        fss = (DeclaredFileSystem.from_json(f) for f in (d.get("fileSystems") or {}).values())
        return cls(
            host=host,
            flake=flake,
            toplevel=_opt(d.get("toplevel")),
            nixos_version=_opt(d.get("nixosVersion")),
            host_name=str(d.get("hostName") or ""),
            domain=_opt(d.get("domain")),
            nameservers=_strs(d.get("nameservers")),
            resolved=bool(d.get("resolved")),
            local_resolver=bool(d.get("useLocalResolver")),
            layout=DeclaredLayout.from_json(d.get("layout") or {}),
            system_packages=tuple(DeclaredPackage.from_json(p) for p in d.get("systemPackages") or ()),
            mutable_users=bool(d.get("mutableUsers", True)),
            users={u.name: u for u in sorted(users, key=lambda u: u.name)},
            groups={g.name: g for g in sorted(groups, key=lambda g: g.name)},
            units={u.unit: u for u in sorted(units, key=lambda u: u.unit)},
            etc={e.target: e for e in sorted(etc, key=lambda e: e.target) if e.enable},
            firewall=DeclaredFirewall.from_json(d.get("firewall") or {}),
            file_systems={f.mount_point: f for f in sorted(fss, key=lambda f: f.mount_point)},
            swap_devices=tuple(
                DeclaredSwap(_opt(s.get("device")), _opt(s.get("label"))) for s in d.get("swapDevices") or ()
            ),
        )
