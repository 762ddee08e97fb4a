"""The firewall category against the real tools: rulesets loaded into a throwaway network namespace.

The rulesets are transcribed from nixpkgs' firewall-nftables.nix (with nftables.nix's wrapper) and
firewall-iptables.nix's start script for one declaration; the drift is made the way people make
it (nixos-firewall-tool open, `iptables -I`, `nft flush ruleset`, the firewall's stop script).
Capture runs `nft` / `iptables-save` inside the namespace through the process.run seam, so what
the parsers read is exactly what the installed tools print.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from nixdrift import process
from nixdrift.capture import firewall as capture_firewall
from nixdrift.compare import firewall as compare_firewall
from nixdrift.declared.model import DeclaredState
from nixdrift.errors import NixdriftError
from nixdrift.models import Finding, FlakeInfo, Kind, Severity
from nixdrift.rootfs import Root

TOOLS = ("ip", "nft", "iptables", "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore")
_missing = [t for t in TOOLS if shutil.which(t) is None]
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a network namespace"),
    pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} on PATH"),
]
_run = process.run  # the real one: tests patch process.run to point the collector into the namespace

# The projection's `firewall` for allowedTCPPorts = [ 22 80 ], allowedUDPPortRanges = [ 60000-61000 ],
# interfaces.eth1.allowedTCPPorts = [ 8080 ], and the "lo" that firewall.nix always trusts.
FW: dict[str, Any] = {
    "enable": True,
    "allowedTCPPorts": [22, 80],
    "allowedUDPPortRanges": [{"from": 60000, "to": 61000}],
    "interfaces": {"eth1": {"allowedTCPPorts": [8080]}},
    "trustedInterfaces": ["lo"],
}


def declared(backend: str, **fw: Any) -> DeclaredState:
    return DeclaredState.from_json(
        "web", FlakeInfo(reference="/etc/nixos"), {"firewall": {**FW, **fw, "backend": backend}}
    )


def _all_interfaces(fw: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """cfg.allInterfaces: `default` (the global ports) and the per-interface ones, in attribute order."""
    return sorted({"default": fw, **fw.get("interfaces", {})}.items())


def nixos_nftables(fw: dict[str, Any]) -> str:
    """The nftables-rules script of nftables.nix for firewall-nftables.nix's table (default options)."""
    allow: list[str] = []
    for iface, cfg in _all_interfaces(fw):
        on = "" if iface == "default" else f"iifname {iface} "
        for proto in ("tcp", "udp"):
            items = [str(p) for p in cfg.get(f"allowed{proto.upper()}Ports", [])]
            items += [f"{r['from']}-{r['to']}" for r in cfg.get(f"allowed{proto.upper()}PortRanges", [])]
            if items:
                allow.append(f"{on}{proto} dport {{ {', '.join(items)} }} accept")
    trusted = ", ".join(f'"{i}"' for i in fw.get("trustedInterfaces", []))
    newline = "\n    "
    return f"""\
table inet nixos-fw
delete table inet nixos-fw
table inet nixos-fw {{
  set temp-ports {{
    comment "Temporarily opened ports"
    type inet_proto . inet_service
    flags interval
    auto-merge
  }}
  chain rpfilter {{
    type filter hook prerouting priority mangle + 10; policy drop;
    meta nfproto ipv4 udp sport . udp dport {{ 67 . 68, 68 . 67 }} accept comment "DHCPv4 client/server"
    fib saddr . mark . iif oif exists accept
    jump rpfilter-allow
  }}
  chain rpfilter-allow {{
  }}
  chain input {{
    type filter hook input priority filter; policy drop;
    {f'iifname {{ {trusted} }} accept comment "trusted interfaces"' if trusted else ""}
    # Some ICMPv6 types like NDP is untracked
    ct state vmap {{
      invalid : drop,
      established : accept,
      related : accept,
      new : jump input-allow,
      untracked: jump input-allow,
    }}
    tcp flags syn / fin,syn,rst,ack log level info prefix "refused connection: "
  }}
  chain input-allow {{
    {newline.join(allow)}
    meta l4proto . th dport @temp-ports accept
    icmp type echo-request  accept comment "allow ping"
    icmpv6 type != {{ nd-redirect, 139 }} accept comment "Accept all ICMPv6 messages except redirects and node \
information queries (type 139).  See RFC 4890, section 4.4."
    ip6 daddr fe80::/64 udp dport 546 accept comment "DHCPv6 client"
  }}
}}
"""


def nixos_iptables(fw: dict[str, Any], family: str) -> str:
    """iptables-restore input with the rules firewall-iptables.nix's start script adds (default options).

    Each rule line holds the arguments the script passes to ip46tables / iptables / ip6tables.
    """
    v4 = family == "ipv4"
    rpfilter = ["-A nixos-fw-rpfilter -m rpfilter --validmark -j RETURN"]
    if v4:
        rpfilter += [
            "-A nixos-fw-rpfilter -p udp --sport 67 --dport 68 -j RETURN",
            "-A nixos-fw-rpfilter -s 0.0.0.0 -d 255.255.255.255 -p udp --sport 68 --dport 67 -j RETURN",
        ]
    ports: list[str] = []
    for proto in ("tcp", "udp"):
        for key, spell in ((f"allowed{proto.upper()}Ports", str), (f"allowed{proto.upper()}PortRanges", None)):
            for iface, cfg in _all_interfaces(fw):
                on = "" if iface == "default" else f" -i {iface}"
                for p in cfg.get(key, []):
                    port = spell(p) if spell else f"{p['from']}:{p['to']}"
                    ports.append(f"-A nixos-fw -p {proto} --dport {port} -j nixos-fw-accept{on}")
    icmp = (
        ["-A nixos-fw -p icmp --icmp-type echo-request -j nixos-fw-accept"]
        if v4
        else [
            "-A nixos-fw -p icmpv6 --icmpv6-type redirect -j DROP",
            "-A nixos-fw -p icmpv6 --icmpv6-type 139 -j DROP",
            "-A nixos-fw -p icmpv6 -j nixos-fw-accept",
            "-A nixos-fw -d fe80::/64 -p udp --dport 546 -j nixos-fw-accept",
        ]
    )
    lines = [
        "*mangle", ":nixos-fw-rpfilter - [0:0]", *rpfilter, "-A nixos-fw-rpfilter -j DROP",
        "-A PREROUTING -j nixos-fw-rpfilter", "COMMIT",
        "*filter", ":nixos-fw-accept - [0:0]", "-A nixos-fw-accept -j ACCEPT",
        ":nixos-fw-refuse - [0:0]", "-A nixos-fw-refuse -j DROP",
        ":nixos-fw-log-refuse - [0:0]",
        '-A nixos-fw-log-refuse -p tcp --syn -j LOG --log-level info --log-prefix "refused connection: "',
        "-A nixos-fw-log-refuse -m pkttype ! --pkt-type unicast -j nixos-fw-refuse",
        "-A nixos-fw-log-refuse -j nixos-fw-refuse",
        ":nixos-fw - [0:0]",
        *(f"-A nixos-fw -i {i} -j nixos-fw-accept" for i in fw.get("trustedInterfaces", [])),
        *(f"-A nixos-fw -i {i} -p udp --dport 67 -j nixos-fw-accept" for i in ("ve-+", "vz-+", "vt-+", "ns-+")),
        "-A nixos-fw -m conntrack --ctstate ESTABLISHED,RELATED -j nixos-fw-accept",
        *ports, *icmp, "-A nixos-fw -j nixos-fw-log-refuse", "-A INPUT -j nixos-fw", "COMMIT",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


class Netns:
    """A network namespace of its own; `run` executes a command inside it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, input_text: str | None = None) -> str:
        return _run(self.argv(argv), input_text=input_text, timeout=60).stdout

    def sh(self, command: str) -> None:
        """A fix.command as a user would paste it (`a && b`), run inside the namespace."""
        for part in command.split(" && "):
            self.run(*shlex.split(part))


@pytest.fixture
def netns(monkeypatch: pytest.MonkeyPatch) -> Iterator[Netns]:
    name = f"nixdrift-fw-{secrets.token_hex(4)}"
    try:
        _run(["ip", "netns", "add", name], timeout=30)
    except NixdriftError as exc:
        pytest.skip(f"cannot create a network namespace: {exc}")
    ns = Netns(name)
    # the collector's live path, pointed into the namespace at the one process seam
    monkeypatch.setattr(process, "run", lambda argv, **kw: _run(ns.argv(argv), **kw))
    try:
        yield ns
    finally:
        _run(["ip", "netns", "del", name], check=False, timeout=30)


@pytest.fixture
def nft_host(netns: Netns) -> Netns:
    netns.run("nft", "-f", "-", input_text=nixos_nftables(FW))
    return netns


@pytest.fixture
def ipt_host(netns: Netns) -> Netns:
    try:
        netns.run("iptables-restore", input_text=nixos_iptables(FW, "ipv4"))
        netns.run("ip6tables-restore", input_text=nixos_iptables(FW, "ipv6"))
    except NixdriftError as exc:
        pytest.skip(f"iptables-restore cannot load the NixOS firewall here: {exc}")
    return netns


def _told(f: Finding) -> tuple[str, Severity, str, str, str, str]:
    return (f.id, f.severity, f.actual, f.message, f.fix.nix, f.fix.command)


def scan(decl: DeclaredState, snapshot: Path | None = None) -> dict[str, Finding]:
    """Capture live (inside the namespace) and, when given a directory, from a snapshot of it too."""
    section = capture_firewall.capture(Root(), decl)
    assert section.unavailable is None and section.problems == ()
    live = {f.id: f for f in compare_firewall.compare(decl, section)}
    if snapshot is not None:
        assert capture_firewall.snapshot_extra(snapshot)
        captured = capture_firewall.capture(Root.of(snapshot), decl)
        assert captured.problems == ()
        # the same drift, told the same way (only evidence["source"] names the command or the file)
        assert [_told(f) for f in compare_firewall.compare(decl, captured)] == [_told(f) for f in live.values()]
    return live


def test_nftables_host_as_declared_has_no_drift(nft_host: Netns, tmp_path: Path) -> None:
    assert scan(declared("nftables"), tmp_path) == {}


def test_nixos_firewall_tool_open_on_nftables_is_reported_and_reverted(nft_host: Netns, tmp_path: Path) -> None:
    nft_host.run("nft", "add", "element", "inet", "nixos-fw", "temp-ports", "{ tcp . 9999 }")
    found = scan(declared("nftables"), tmp_path)
    assert list(found) == ["firewall/tcp/9999"]
    f = found["firewall/tcp/9999"]
    # opened on purpose with the tool (issue 10): low, with the element to delete
    assert (f.kind, f.severity, f.evidence["origin"]) == (Kind.UNMANAGED, Severity.LOW, "temp-ports")
    nft_host.sh(f.fix.command)
    assert scan(declared("nftables")) == {}


def test_nft_rule_added_by_hand_is_reported_and_reverted(nft_host: Netns) -> None:
    nft_host.run("nft", "add", "rule", "inet", "nixos-fw", "input-allow", "udp", "dport", "5353", "accept")
    found = scan(declared("nftables"))
    assert list(found) == ["firewall/udp/5353"]
    nft_host.sh(found["firewall/udp/5353"].fix.command)
    assert scan(declared("nftables")) == {}


@pytest.mark.parametrize("stop", [("flush", "ruleset"), ("delete", "table", "inet", "nixos-fw")])
def test_flushed_or_deleted_nft_table_disables_the_firewall(nft_host: Netns, stop: tuple[str, ...]) -> None:
    nft_host.run("nft", *stop)
    found = scan(declared("nftables"))
    assert list(found) == ["firewall/nixos-fw/enabled"]
    assert found["firewall/nixos-fw/enabled"].actual == "no table inet nixos-fw in the ruleset"


def test_iptables_host_as_declared_has_no_drift(ipt_host: Netns, tmp_path: Path) -> None:
    assert scan(declared("iptables"), tmp_path) == {}


def test_iptables_insert_is_reported_and_reverted(ipt_host: Netns, tmp_path: Path) -> None:
    ipt_host.run("iptables", "-I", "nixos-fw", "-p", "tcp", "--dport", "9999", "-j", "nixos-fw-accept")
    found = scan(declared("iptables"), tmp_path)
    assert list(found) == ["firewall/tcp/9999"]
    f = found["firewall/tcp/9999"]
    assert (f.severity, f.actual) == (Severity.CRITICAL, "open (ipv4)")
    ipt_host.sh(f.fix.command)
    assert scan(declared("iptables")) == {}


def test_iptables_firewall_stopped_is_disabled(ipt_host: Netns) -> None:
    for tool in ("iptables", "ip6tables"):  # what firewall-stop does
        ipt_host.run(tool, "-D", "INPUT", "-j", "nixos-fw")
    found = scan(declared("iptables"))
    assert list(found) == ["firewall/nixos-fw/enabled"]
    assert "not jumped to from INPUT" in found["firewall/nixos-fw/enabled"].actual


def test_iptables_nft_ruleset_read_through_nft_has_no_drift(ipt_host: Netns, tmp_path: Path) -> None:
    """An iptables host whose snapshot holds only nft.json: iptables-nft's tables, read the nft way."""
    (tmp_path / ".nixdrift").mkdir()
    (tmp_path / ".nixdrift" / "nft.json").write_text(ipt_host.run("nft", "-j", "list", "ruleset"))
    decl = declared("iptables")
    section = capture_firewall.capture(Root.of(tmp_path), decl)
    assert section.data is not None and section.data.backend == "nftables" and section.problems == ()
    assert compare_firewall.compare(decl, section) == ()


def test_port_opened_where_the_flake_has_extra_rules_is_high_not_critical(ipt_host: Netns) -> None:
    ipt_host.run("iptables", "-I", "nixos-fw", "-p", "tcp", "--dport", "9999", "-j", "nixos-fw-accept")
    found = scan(declared("iptables", hasExtraRules=True))
    f = found["firewall/tcp/9999"]
    assert (f.severity, f.evidence["rule"]) == (Severity.HIGH, "port-opened-extra")
    assert "extraCommands/extraInputRules" in f.message


def test_temp_port_stays_temporary_even_with_extra_rules(nft_host: Netns) -> None:
    nft_host.run("nft", "add", "element", "inet", "nixos-fw", "temp-ports", "{ udp . 51820 }")
    found = scan(declared("nftables", hasExtraRules=True))
    assert found["firewall/udp/51820"].severity is Severity.LOW  # nixos-firewall-tool's set, never the flake's rules
