"""Firewall: the ports the live ruleset accepts against networking.firewall.*.

Rules NixOS itself adds whatever the declaration says (DHCP for nspawn/vmspawn interfaces, the
DHCPv6 client, the trusted loopback) are never drift. A declared-disabled firewall gives no
findings: a ruleset that is stricter than the declaration widens nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from nixdrift.compare.common import finding, nix_attr, printable, sh
from nixdrift.declared.model import DeclaredFirewall, DeclaredState, FirewallPorts, PortRange
from nixdrift.live.firewall import FirewallLive, FwAccept, norm_iface
from nixdrift.models import Category, Finding, Kind, Section

_BUILTIN_DHCP_IFACES = frozenset({"ve-+", "vz-+", "vt-+", "ns-+"})


def _builtin(a: FwAccept, r: PortRange) -> bool:
    """Accepts that firewall-iptables.nix / firewall-nftables.nix add on every host."""
    if a.proto == "udp" and r == PortRange(67, 67) and a.interface in _BUILTIN_DHCP_IFACES:
        return True
    return a.proto == "udp" and r == PortRange(546, 546) and "fe80::/64" in a.conditions


def _covered(r: PortRange, singles: Iterable[int], ranges: Iterable[PortRange]) -> bool:
    """Is every port of r allowed by the given ports and ranges?"""
    ports, spans = frozenset(singles), tuple(ranges)
    p = r.start
    while p <= r.end:
        if p in ports:
            p += 1
            continue
        ends = [s.end for s in spans if p in s]
        if not ends:
            return False
        p = max(ends) + 1
    return True


def _declared_for(fw: DeclaredFirewall, iface: str | None) -> tuple[FirewallPorts, ...]:
    """The declared port sets that apply on an interface (global ones apply everywhere)."""
    per_iface = fw.interfaces.get(iface) if iface is not None else None
    return (fw.ports,) if per_iface is None else (fw.ports, per_iface)


def _allows(fw: DeclaredFirewall, proto: str, r: PortRange, iface: str | None) -> bool:
    sets = _declared_for(fw, iface)
    singles = [p for s in sets for p in (s.tcp if proto == "tcp" else s.udp)]
    ranges = [x for s in sets for x in (s.tcp_ranges if proto == "tcp" else s.udp_ranges)]
    return _covered(r, singles, ranges)


def _trusted(fw: DeclaredFirewall) -> frozenset[str]:
    return frozenset({"lo", *(norm_iface(i) for i in fw.trusted_interfaces)})


def _port_text(r: PortRange) -> str:
    return str(r.start) if r.start == r.end else f"{r.start}-{r.end}"


def _subject(proto: str, r: PortRange, iface: str | None) -> tuple[str, str]:
    """(id, subject) of a port finding."""
    where = f"{printable(iface)}/" if iface is not None else ""
    subject = f"{proto}/{_port_text(r)}" + (f" on {printable(iface)}" if iface is not None else "")
    return f"firewall/{where}{proto}/{_port_text(r)}", subject


def _nix_allow(proto: str, r: PortRange, iface: str | None) -> str:
    base = "networking.firewall" + (f".interfaces.{nix_attr(iface)}" if iface is not None else "")
    kind = proto.upper()
    if r.start == r.end:
        return f"{base}.allowed{kind}Ports = [ {r.start} ];"
    return f"{base}.allowed{kind}PortRanges = [ {{ from = {r.start}; to = {r.end}; }} ];"


def _reload(live: FirewallLive) -> str:
    unit = "nftables.service" if live.backend == "nftables" else "firewall.service"
    return sh("systemctl", "restart" if live.backend == "iptables" else "reload", unit)


def _revert(accepts: Iterable[FwAccept]) -> str:
    return " && ".join(dict.fromkeys(sh(*a.revert) for a in accepts))


def _disabled(declared: DeclaredState, live: FirewallLive, actual: str, evidence: dict[str, str]) -> Finding:
    return finding(
        rule_name="firewall-disabled",
        id="firewall/nixos-fw/enabled",
        category=Category.FIREWALL,
        subject="nixos-fw",
        kind=Kind.CHANGED,
        expected=f"enabled ({declared.firewall.backend})",
        actual=actual,
        message=f"The NixOS firewall is not in force: {actual}.",
        nix="networking.firewall.enable = false;",
        command=_reload(live),
        evidence={"source": live.source, **evidence},
    )


def _opened(
    fw: DeclaredFirewall, key: tuple[str | None, str, PortRange], accepts: list[FwAccept], live: FirewallLive
) -> Finding:
    iface, proto, r = key
    fid, subject = _subject(proto, r, iface)
    conditions = sorted({a.conditions for a in accepts if a.conditions})
    families = ", ".join(sorted({a.family for a in accepts}))
    actual = f"open ({families}" + (f"; only where {' / '.join(conditions)}" if conditions else "") + ")"
    origins = sorted({a.origin for a in accepts})
    message = f"Port {subject} is open in the firewall but not allowed by networking.firewall."
    # A rule (not a nixos-firewall-tool set element) may come from the flake's own extra rules,
    # which nixdrift does not read: still reported, one level lower.
    extra = fw.has_extra_rules and origins == ["rule"]
    if extra:
        message += " The flake adds its own firewall rules (extraCommands/extraInputRules) that may open it."
    return finding(
        rule_name="port-opened-extra" if extra else "port-opened",
        id=fid,
        category=Category.FIREWALL,
        subject=subject,
        kind=Kind.UNMANAGED,
        expected="closed",
        actual=actual,
        message=message,
        nix=_nix_allow(proto, r, iface),
        command=_revert(accepts),
        evidence={
            "source": live.source,
            "firewall_rule": " | ".join(sorted({printable(a.text) for a in accepts})),
            "origin": ", ".join(origins),
        },
    )


def _open_ports(declared: DeclaredState, live: FirewallLive) -> list[Finding]:
    fw = declared.firewall
    trusted = _trusted(fw)
    undeclared: dict[tuple[str | None, str, PortRange], list[FwAccept]] = defaultdict(list)
    findings: list[Finding] = []
    for a in live.accepts:
        iface = norm_iface(a.interface) if a.interface is not None else None
        if iface in trusted:
            continue
        if a.proto is None:  # accepts every port
            if iface is None and not a.conditions:
                findings.append(_disabled(declared, live, "a rule accepts all input", {"firewall_rule": a.text}))
            else:  # on one interface or from some sources only: every port opened there
                undeclared[(iface, "all", PortRange(0, 65535))].append(a)
            continue
        for r in a.ports:
            if not _builtin(a, r) and not _allows(fw, a.proto, r, iface):
                undeclared[(iface, a.proto, r)].append(a)
    for key, accepts in sorted(undeclared.items(), key=_order):
        temporary = all(a.origin == TEMP_PORTS for a in accepts)
        findings.append(_temporary(key, accepts, live) if temporary else _opened(fw, key, accepts, live))
    return findings


TEMP_PORTS = "temp-ports"  # the set nixos-firewall-tool fills (nft add element inet nixos-fw temp-ports)


def _temporary(key: tuple[str | None, str, PortRange], accepts: list[FwAccept], live: FirewallLive) -> Finding:
    """A port opened on purpose with `nixos-firewall-tool open`: not a hand-made hole, but still
    something the flake does not declare (it lasts until a reboot, a reload or the tool's reset)."""
    iface, proto, r = key
    fid, subject = _subject(proto, r, iface)
    return finding(
        rule_name="port-temporary",
        id=fid,
        category=Category.FIREWALL,
        subject=subject,
        kind=Kind.UNMANAGED,
        expected="closed",
        actual="open temporarily (nixos-firewall-tool, set temp-ports)",
        message=f"Port {subject} was opened temporarily with nixos-firewall-tool; it closes at reboot, "
        "on a firewall reload or with `nixos-firewall-tool reset`.",
        nix=_nix_allow(proto, r, iface),
        command=_revert(accepts),
        safe=True,
        evidence={
            "source": live.source,
            "firewall_rule": " | ".join(sorted({printable(a.text) for a in accepts})),
            "origin": TEMP_PORTS,
        },
    )


def _order(item: tuple[tuple[str | None, str, PortRange], list[FwAccept]]) -> tuple[str, str, int, int]:
    (iface, proto, r), _ = item
    return (iface or "", proto, r.start, r.end)


def _live_covers(live: FirewallLive, family: str, proto: str, r: PortRange, iface: str | None) -> bool:
    singles: list[int] = []
    ranges: list[PortRange] = []
    for a in live.accepts:
        on = norm_iface(a.interface) if a.interface is not None else None
        if a.family != family or on not in (None, iface):
            continue
        if a.proto is None and not a.ports:
            return True  # a trusted interface or accept-all
        if a.proto == proto:
            ranges.extend(a.ports)
    return _covered(r, singles, ranges)


def _declared_ports(fw: DeclaredFirewall) -> list[tuple[str | None, str, PortRange]]:
    wanted: list[tuple[str | None, str, PortRange]] = []
    for iface, ports in [(None, fw.ports), *sorted(fw.interfaces.items())]:
        for proto, singles, spans in (("tcp", ports.tcp, ports.tcp_ranges), ("udp", ports.udp, ports.udp_ranges)):
            wanted.extend((iface, proto, PortRange(p, p)) for p in sorted(singles))
            wanted.extend((iface, proto, s) for s in spans)
    return wanted


def _closed_ports(declared: DeclaredState, live: FirewallLive, families: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    for iface, proto, r in _declared_ports(declared.firewall):
        lacking = [f for f in families if not _live_covers(live, f, proto, r, iface)]
        if not lacking:
            continue
        fid, subject = _subject(proto, r, iface)
        findings.append(
            finding(
                rule_name="port-closed",
                id=fid,
                category=Category.FIREWALL,
                subject=subject,
                kind=Kind.MISSING,
                expected="open",
                actual=f"not open ({', '.join(lacking)})",
                message=f"Port {subject} is allowed by networking.firewall but the live firewall does not open it.",
                command=_reload(live),
                evidence={"source": live.source},
            )
        )
    return findings


def compare(declared: DeclaredState, live: Section[FirewallLive]) -> tuple[Finding, ...]:
    data = live.data
    if data is None or not declared.firewall.enable:
        return ()
    active = [b.family for b in data.bases if b.hooked and b.refuses]
    if not active:
        reasons = "; ".join(f"{b.family}: {b.detail}" for b in data.bases if b.detail)
        table = "table inet nixos-fw" if data.backend == "nftables" else "chain nixos-fw"
        return (_disabled(declared, data, reasons or f"no {table} in the ruleset", {}),)
    findings = _open_ports(declared, data) + _closed_ports(declared, data, active)
    unique: dict[str, Finding] = {}
    for f in findings:
        unique.setdefault(f.id, f)  # an accept-all rule in both families is one finding
    return tuple(unique.values())
