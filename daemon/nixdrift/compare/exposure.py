"""Exposure: listening sockets whose owner nothing in the flake declares.

A listener is declared when its unit is enabled in the flake or shipped by the closure (an
instance `getty@tty1.service` counts through its template `getty@.service`), when systemd itself
holds it for a socket unit of the closure, or, for sockets with no known unit (kernel sockets such
as WireGuard's), when the declared firewall opens its port.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from nixdrift.compare.common import finding, printable, sh
from nixdrift.declared.model import DeclaredState
from nixdrift.live.exposure import ExposureLive, Listener
from nixdrift.models import Category, Finding, Kind, Section

_SYSTEMD = "init.scope"  # pid 1: sockets it holds belong to socket units


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _template(unit: str) -> str:
    name, at, rest = unit.partition("@")
    return f"{name}@.{rest.rsplit('.', 1)[-1]}" if at else unit


def _declared(declared: DeclaredState, live: ExposureLive, x: Listener) -> bool:
    if x.unit == _SYSTEMD or x.pid == 1:
        return (x.proto, x.port) in live.socket_ports
    if x.unit:
        enabled = {u for u, d in declared.units.items() if d.enable}
        known = live.closure_units | enabled
        return x.unit in known or _template(x.unit) in known
    return declared.firewall.allows(x.proto, x.port)


def _owner(x: Listener) -> str:
    if x.unit:
        return printable(x.unit)
    return f"pid {x.pid} ({printable(x.process)})" if x.pid is not None else "the kernel or an unknown process"


def _revert(x: Listener) -> str:
    """Stop the unit that owns it; a process in a session or with no unit is killed."""
    if x.unit.endswith((".service", ".socket")):
        return sh("systemctl", "stop", x.unit)
    return sh("kill", str(x.pid)) if x.pid is not None else ""


def _finding(proto: str, port: int, group: list[Listener], live: ExposureLive) -> Finding:
    exposed = [x for x in group if not is_loopback(x.address)]
    shown = exposed or group
    addresses = ", ".join(sorted({printable(x.address) for x in shown}))
    owners = ", ".join(sorted({_owner(x) for x in shown}))
    units = sorted({x.unit for x in shown if x.unit})
    commands = list(dict.fromkeys(c for x in shown if (c := _revert(x))))
    return finding(
        rule_name="undeclared-listener" if exposed else "local-listener",
        id=f"exposure/{proto}/{port}",
        category=Category.EXPOSURE,
        subject=f"{proto}/{port}",
        kind=Kind.UNMANAGED,
        expected="no listener" if exposed else "no undeclared listener",
        actual=f"{owners} on {addresses}",
        message=f"{owners} listens on {proto} port {port} ({addresses}) and nothing in the flake declares it.",
        command=" && ".join(commands),
        evidence={
            "unit": ", ".join(printable(u) for u in units),
            "pid": ", ".join(sorted({str(x.pid) for x in shown if x.pid is not None})),
            "process": ", ".join(sorted({printable(x.process) for x in shown if x.process})),
            "source": live.source,
        },
    )


def compare(declared: DeclaredState, live: Section[ExposureLive]) -> tuple[Finding, ...]:
    data = live.data
    if data is None:
        return ()
    groups: dict[tuple[str, int], list[Listener]] = defaultdict(list)
    for x in data.listeners:
        if not _declared(declared, data, x):
            groups[(x.proto, x.port)].append(x)
    return tuple(_finding(proto, port, group, data) for (proto, port), group in sorted(groups.items()))
