"""In-memory findings and reports for the renderer and policy tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nixdrift.compare.common import finding, sh
from nixdrift.models import Category, Finding, FlakeInfo, Generations, Kind, Report, Severity, sort_findings

SYSTEM = "/nix/store/aaa-nixos-system"
RUNNING = Generations(SYSTEM, SYSTEM, None)  # declared = current, never rebooted into


def port_opened(port: int = 8080) -> Finding:
    return finding(
        rule_name="port-opened",
        id=f"firewall/tcp/{port}/open",
        category=Category.FIREWALL,
        subject=f"tcp/{port}",
        kind=Kind.UNMANAGED,
        expected="closed",
        actual="open",
        message=f"TCP port {port} is open",
        nix=f"networking.firewall.allowedTCPPorts = [ {port} ];",
        command=sh("nft", "delete", "element", "inet", "nixos-fw", "temp-ports", f"{{ tcp . {port} }}"),
        safe=True,
    )


def dns_changed() -> Finding:
    return finding(
        rule_name="dns-changed",
        id="network/dns/nameservers",
        category=Category.NETWORK,
        subject="resolv.conf",
        kind=Kind.CHANGED,
        expected="1.1.1.1",
        actual="8.8.8.8",
        message="nameservers differ",
    )


def make_report(
    *findings: Finding,
    categories: Mapping[Category, str] | None = None,
    problems: Iterable[str] = (),
    threshold: Severity = Severity.LOW,
    dirty: bool = False,
    host: str = "web1",
    generations: Generations = RUNNING,
) -> Report:
    return Report(
        host=host,
        generated_at="2024-05-01T10:00:00Z",
        flake=FlakeInfo("git+file:///etc/nixos", "abc123", dirty),
        generations=generations,
        categories=categories if categories is not None else {f.category: "drift" for f in findings},
        findings=sort_findings(list(findings)),
        threshold=threshold,
        problems=tuple(problems),
    )
