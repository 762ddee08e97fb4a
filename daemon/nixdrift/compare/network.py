"""Network: hostname and DNS resolvers against networking.hostName and networking.nameservers.

When the flake declares no nameservers, DHCP (or systemd-resolved) decides them, so only a
resolv.conf that bypasses a declared systemd-resolved is drift. Extra servers count only when the
declaration lists servers of its own; with networking.resolvconf.useLocalResolver the loopback
resolver (127.0.0.1, ::1) is expected as well.
"""

from __future__ import annotations

import ipaddress

from nixdrift.compare.common import finding, nix_str, printable, sh
from nixdrift.declared.model import DeclaredState
from nixdrift.live.network import HOSTNAME, KERNEL_HOSTNAME, RESOLV_CONF, NetworkLive
from nixdrift.models import Category, Finding, Kind, Section

STUB = "127.0.0.53"
STUBS = frozenset({STUB, "127.0.0.54"})
LOOPBACK = frozenset({"127.0.0.1", "::1"})  # what resolvconf writes for useLocalResolver


def normalize(server: str) -> str:
    """One spelling per address (IPv6 compressed, lowercase), the zone kept."""
    address, sep, zone = server.partition("%")
    try:
        return str(ipaddress.ip_address(address)) + sep + zone
    except ValueError:
        return server


def _hostnames(declared: DeclaredState, live: NetworkLive) -> list[Finding]:
    want = declared.host_name
    if not want:
        return []  # hostName "" lets DHCP decide
    accepted = {want, f"{want}.{declared.domain}"} if declared.domain else {want}
    findings: list[Finding] = []
    for aspect, value, path in (
        ("static", live.hostname_file, HOSTNAME),
        ("kernel", live.kernel_hostname, KERNEL_HOSTNAME),
    ):
        if value is None or value in accepted:
            continue
        shown = printable(value) or "(empty)"
        findings.append(
            finding(
                rule_name="hostname-changed",
                id=f"network/hostname/{aspect}",
                category=Category.NETWORK,
                subject="hostname",
                kind=Kind.CHANGED,
                expected=want,
                actual=shown,
                message=f"The {'hostname in ' + path if aspect == 'static' else 'running hostname'} is "
                f"{shown!r}, not {want!r}.",
                nix=f"networking.hostName = {nix_str(value)};",
                command=sh("hostnamectl", "set-hostname", want),
                evidence={"path": path},
            )
        )
    return findings


def _dns(declared: DeclaredState, live: NetworkLive, server: str, kind: Kind, nix: str, command: str) -> Finding:
    shown = printable(server)
    missing = kind is Kind.MISSING
    return finding(
        rule_name="dns-changed",
        id=f"network/dns/{shown}",
        category=Category.NETWORK,
        subject=f"nameserver {shown}",
        kind=kind,
        expected="listed" if missing else "not listed",
        actual="not listed" if missing else "listed",
        message=f"Nameserver {shown} is {'missing from' if missing else 'listed in'} {RESOLV_CONF}"
        + (" but declared." if missing else " but not declared."),
        nix=nix,
        command=command,
        evidence={"path": RESOLV_CONF, "resolves_to": live.resolv_target},
    )


def _nameservers(declared: DeclaredState, live: NetworkLive) -> list[Finding]:
    if live.nameservers is None:
        live_servers: list[str] = []
    else:
        live_servers = list(dict.fromkeys(normalize(s) for s in live.nameservers))
    wanted = [normalize(s) for s in declared.nameservers]
    if declared.local_resolver:  # a resolver on this host serves DNS: listing it is expected
        live_servers = [s for s in live_servers if s not in LOOPBACK or s in wanted]
    nix = "networking.nameservers = [ " + "".join(nix_str(s) + " " for s in live_servers) + "];"
    if declared.resolved:
        if STUBS & set(live_servers):
            return []
        command = sh("ln", "-sfn", "/etc/static/resolv.conf", RESOLV_CONF)
        extra = [s for s in live_servers if s not in wanted]
        return [_dns(declared, live, STUB, Kind.MISSING, nix, command)] + [
            _dns(declared, live, s, Kind.UNMANAGED, nix, command) for s in extra
        ]
    if not wanted:
        return []  # DHCP decides
    command = sh("resolvconf", "-u")
    missing = [s for s in wanted if s not in live_servers]
    extra = [s for s in live_servers if s not in wanted]
    return [_dns(declared, live, s, Kind.MISSING, nix, command) for s in missing] + [
        _dns(declared, live, s, Kind.UNMANAGED, nix, command) for s in extra
    ]


def compare(declared: DeclaredState, live: Section[NetworkLive]) -> tuple[Finding, ...]:
    if live.data is None:
        return ()
    return tuple(_hostnames(declared, live.data) + _nameservers(declared, live.data))
