"""Firewall: a host's ruleset as nixpkgs' firewall modules build it from a declaration, then drift."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nixdrift import process
from nixdrift.capture import firewall as capture_firewall
from nixdrift.compare import firewall as compare_firewall
from nixdrift.declared.model import DeclaredState
from nixdrift.errors import ToolMissingError
from nixdrift.models import Category, Finding, FlakeInfo, Kind, Severity
from nixdrift.rootfs import Root

FW: dict[str, Any] = {
    "allowedTCPPorts": [22, 80],
    "allowedUDPPortRanges": [{"from": 60000, "to": 61000}],
    "interfaces": {"eth1": {"allowedTCPPorts": [8080]}},
    "trustedInterfaces": ["lo"],
}


def declared(backend: str = "iptables", enable: bool = True, **fw: Any) -> DeclaredState:
    raw = {**FW, **fw, "enable": enable, "backend": backend}
    return DeclaredState.from_json("web", FlakeInfo(reference="/etc/nixos"), {"firewall": raw})


def _ipt_ports(fw: dict[str, Any]) -> list[str]:
    """The accept lines firewall-iptables.nix writes for allowed ports, as iptables-save prints them."""
    lines: list[str] = []
    scopes = [(None, fw), *fw.get("interfaces", {}).items()]
    for proto in ("tcp", "udp"):
        key = proto.upper()
        for iface, cfg in scopes:
            on = f"-i {iface} " if iface else ""
            lines += [
                f"-A nixos-fw {on}-p {proto} -m {proto} --dport {p} -j nixos-fw-accept"
                for p in cfg.get(f"allowed{key}Ports", [])
            ]
        for iface, cfg in scopes:
            on = f"-i {iface} " if iface else ""
            for r in cfg.get(f"allowed{key}PortRanges", []):
                lines.append(f"-A nixos-fw {on}-p {proto} -m {proto} --dport {r['from']}:{r['to']} -j nixos-fw-accept")
    return lines


def iptables_save(fw: dict[str, Any], family: str = "ipv4", *, hand: Sequence[str] = (), hooked: bool = True) -> str:
    """iptables-save (or ip6tables-save) of a host running firewall-iptables.nix for `fw`."""
    trusted = [f"-A nixos-fw -i {i} -j nixos-fw-accept" for i in fw.get("trustedInterfaces", [])]
    dhcp = [f"-A nixos-fw -i {i} -p udp -m udp --dport 67 -j nixos-fw-accept" for i in ("ve-+", "vz-+", "vt-+", "ns-+")]
    if family == "ipv4":
        tail = ["-A nixos-fw -p icmp -m icmp --icmp-type 8 -j nixos-fw-accept"]
    else:
        tail = [
            "-A nixos-fw -p ipv6-icmp -m icmp6 --icmpv6-type 137 -j DROP",
            "-A nixos-fw -p ipv6-icmp -m icmp6 --icmpv6-type 139 -j DROP",
            "-A nixos-fw -p ipv6-icmp -j nixos-fw-accept",
            "-A nixos-fw -d fe80::/64 -p udp -m udp --dport 546 -j nixos-fw-accept",
        ]
    lines = [
        "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":nixos-fw - [0:0]",
        ":nixos-fw-accept - [0:0]", ":nixos-fw-log-refuse - [0:0]", ":nixos-fw-refuse - [0:0]",
        *(["-A INPUT -j nixos-fw"] if hooked else []),
        *hand,  # nixos-firewall-tool and `iptables -I` insert at the top
        *trusted, *dhcp, "-A nixos-fw -m conntrack --ctstate RELATED,ESTABLISHED -j nixos-fw-accept",
        *_ipt_ports(fw), *tail, "-A nixos-fw -j nixos-fw-log-refuse", "-A nixos-fw-accept -j ACCEPT",
        "-A nixos-fw-log-refuse -m pkttype ! --pkt-type unicast -j nixos-fw-refuse",
        "-A nixos-fw-log-refuse -j nixos-fw-refuse", "-A nixos-fw-refuse -j DROP", "COMMIT",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _nft_set(items: Sequence[Any]) -> Any:
    """nft prints a one-element set as its bare element."""
    return items[0] if len(items) == 1 else {"set": list(items)}


def _nft_ports(ports: list[int], ranges: list[dict[str, int]]) -> Any:
    return _nft_set([*ports, *({"range": [r["from"], r["to"]]} for r in ranges)])


def nft_ruleset(fw: dict[str, Any], *, temp: Sequence[Any] = (), hand: Sequence[dict[str, Any]] = ()) -> str:
    """`nft -j list ruleset` of a host running firewall-nftables.nix for `fw`."""
    base = {"family": "inet", "table": "nixos-fw"}

    def rule(chain: str, handle: int, *expr: Any) -> dict[str, Any]:
        return {"rule": {**base, "chain": chain, "handle": handle, "expr": list(expr)}}

    def match(left: Any, right: Any) -> dict[str, Any]:
        return {"match": {"op": "==", "left": left, "right": right}}

    iif = {"meta": {"key": "iifname"}}
    allow: list[dict[str, Any]] = []
    for iface, cfg in [(None, fw), *fw.get("interfaces", {}).items()]:
        for proto in ("tcp", "udp"):
            ports, ranges = (
                cfg.get(f"allowed{proto.upper()}Ports", []),
                cfg.get(f"allowed{proto.upper()}PortRanges", []),
            )
            if ports or ranges:
                on = [match(iif, iface)] if iface else []
                dport = match({"payload": {"protocol": proto, "field": "dport"}}, _nft_ports(ports, ranges))
                allow.append(rule("input-allow", 20 + len(allow), *on, dport, {"accept": None}))
    temp_set = {**base, "name": "temp-ports", "type": ["inet_proto", "inet_service"], "handle": 2, "flags": "interval"}
    items = [
        {"metainfo": {"version": "1.1.1", "release_name": "Commodore Bullmoose #2", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "nixos-fw", "handle": 1}},
        {"set": temp_set | ({"elem": list(temp)} if temp else {})},
        {
            "chain": {
                **base,
                "name": "input",
                "handle": 5,
                "type": "filter",
                "hook": "input",
                "prio": 0,
                "policy": "drop",
            }
        },
        {"chain": {**base, "name": "input-allow", "handle": 6}},
        rule("input", 10, match(iif, _nft_set(fw.get("trustedInterfaces", []))), {"accept": None}),
        *allow,
        rule(
            "input-allow",
            40,
            match(
                {"concat": [{"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]},
                "@temp-ports",
            ),
            {"accept": None},
        ),
        rule(
            "input-allow",
            41,
            match({"payload": {"protocol": "ip6", "field": "daddr"}}, {"prefix": {"addr": "fe80::", "len": 64}}),
            match({"payload": {"protocol": "udp", "field": "dport"}}, 546),
            {"accept": None},
        ),
        *hand,
    ]
    return json.dumps({"nftables": items})


def check(decl: DeclaredState, tmp_path: Path, files: dict[str, str]) -> dict[str, Finding]:
    """Capture from a snapshot holding the given captured files, then compare."""
    for name, text in files.items():
        (tmp_path / ".nixdrift").mkdir(exist_ok=True)
        (tmp_path / ".nixdrift" / name).write_text(text)
    section = capture_firewall.capture(Root.of(tmp_path), decl)
    assert section.unavailable is None and section.problems == ()
    findings = compare_firewall.compare(decl, section)
    assert len({f.id for f in findings}) == len(findings)
    return {f.id: f for f in findings}


def ipt_files(fw: dict[str, Any] = FW, *, hand: Sequence[str] = (), hooked: bool = True) -> dict[str, str]:
    return {
        "iptables-save.txt": iptables_save(fw, hand=hand, hooked=hooked),
        "ip6tables-save.txt": iptables_save(fw, "ipv6", hand=hand, hooked=hooked),
    }


def test_host_as_declared_has_no_drift_iptables(tmp_path: Path) -> None:
    assert check(declared(), tmp_path, ipt_files()) == {}


def test_host_as_declared_has_no_drift_nftables(tmp_path: Path) -> None:
    assert check(declared("nftables"), tmp_path, {"nft.json": nft_ruleset(FW)}) == {}


def test_nixos_firewall_tool_open_is_a_critical_opened_port(tmp_path: Path) -> None:
    tool = "-A nixos-fw -p tcp -m tcp --dport 8888 -j nixos-fw-accept"
    found = check(declared(), tmp_path, ipt_files(hand=[tool]))
    assert list(found) == ["firewall/tcp/8888"]
    f = found["firewall/tcp/8888"]
    assert (f.severity, f.kind, f.category) == (Severity.CRITICAL, Kind.UNMANAGED, Category.FIREWALL)
    assert f.actual == "open (ipv4, ipv6)"
    assert f.fix.command == (
        "iptables -t filter -D nixos-fw -p tcp -m tcp --dport 8888 -j nixos-fw-accept"
        " && ip6tables -t filter -D nixos-fw -p tcp -m tcp --dport 8888 -j nixos-fw-accept"
    )
    assert f.fix.nix == "networking.firewall.allowedTCPPorts = [ 8888 ];"
    assert not f.fix.safe


def test_nft_temp_port_is_reported_with_the_element_to_delete(tmp_path: Path) -> None:
    nft = nft_ruleset(FW, temp=[{"concat": ["tcp", 8888]}])
    found = check(declared("nftables"), tmp_path, {"nft.json": nft})
    assert list(found) == ["firewall/tcp/8888"]
    assert found["firewall/tcp/8888"].fix.command == "nft delete element inet nixos-fw temp-ports '{ tcp . 8888 }'"
    assert found["firewall/tcp/8888"].evidence["origin"] == "temp-ports"


def test_port_opened_on_one_interface_names_it(tmp_path: Path) -> None:
    hand = "-A nixos-fw -i eth0 -p udp -m udp --dport 5353 -j nixos-fw-accept"
    found = check(declared(), tmp_path, ipt_files(hand=[hand]))
    f = found["firewall/eth0/udp/5353"]
    assert f.fix.nix == "networking.firewall.interfaces.eth0.allowedUDPPorts = [ 5353 ];"


def test_port_declared_on_one_interface_is_not_open_everywhere(tmp_path: Path) -> None:
    hand = "-A nixos-fw -p tcp -m tcp --dport 8080 -j nixos-fw-accept"
    found = check(declared(), tmp_path, ipt_files(hand=[hand]))
    assert list(found) == ["firewall/tcp/8080"]


def test_range_wider_than_declared_is_opened(tmp_path: Path) -> None:
    hand = "-A nixos-fw -p udp -m udp --dport 60000:62000 -j nixos-fw-accept"
    found = check(declared(), tmp_path, ipt_files(hand=[hand]))
    assert list(found) == ["firewall/udp/60000-62000"]
    assert "allowedUDPPortRanges = [ { from = 60000; to = 62000; } ]" in found["firewall/udp/60000-62000"].fix.nix


def test_range_inside_the_declared_one_is_fine(tmp_path: Path) -> None:
    hand = "-A nixos-fw -p udp -m udp --dport 60100:60200 -j nixos-fw-accept"
    assert check(declared(), tmp_path, ipt_files(hand=[hand])) == {}


def test_interface_trusted_by_hand_is_reported(tmp_path: Path) -> None:
    found = check(declared(), tmp_path, ipt_files(hand=["-A nixos-fw -i wg0 -j nixos-fw-accept"]))
    assert list(found) == ["firewall/wg0/all/0-65535"]


def test_accept_everything_in_input_disables_the_firewall(tmp_path: Path) -> None:
    files = ipt_files()
    files["iptables-save.txt"] = files["iptables-save.txt"].replace(
        "-A INPUT -j nixos-fw", "-A INPUT -j ACCEPT\n-A INPUT -j nixos-fw"
    )
    found = check(declared(), tmp_path, files)
    assert found["firewall/nixos-fw/enabled"].severity is Severity.CRITICAL


def test_declared_port_removed_by_hand_is_closed(tmp_path: Path) -> None:
    files = {
        k: v.replace("-A nixos-fw -p tcp -m tcp --dport 80 -j nixos-fw-accept\n", "") for k, v in ipt_files().items()
    }
    files["ip6tables-save.txt"] = iptables_save(FW, "ipv6")
    found = check(declared(), tmp_path, files)
    f = found["firewall/tcp/80"]
    assert (f.kind, f.severity, f.actual) == (Kind.MISSING, Severity.MEDIUM, "not open (ipv4)")
    assert f.fix.command == "systemctl restart firewall.service"


def test_stopped_firewall_is_disabled(tmp_path: Path) -> None:
    found = check(declared(), tmp_path, ipt_files(hooked=False))
    assert list(found) == ["firewall/nixos-fw/enabled"]
    assert "not jumped to from INPUT" in found["firewall/nixos-fw/enabled"].actual


def test_flushed_nft_ruleset_is_disabled(tmp_path: Path) -> None:
    found = check(declared("nftables"), tmp_path, {"nft.json": '{"nftables": [{"metainfo": {}}]}'})
    f = found["firewall/nixos-fw/enabled"]
    assert f.actual == "no table inet nixos-fw in the ruleset"
    assert f.fix.command == "systemctl reload nftables.service"


def test_declared_disabled_firewall_gives_nothing(tmp_path: Path) -> None:
    assert check(declared(enable=False), tmp_path, {"nft.json": '{"nftables": []}'}) == {}


def test_nft_rule_added_by_hand_is_deleted_by_handle(tmp_path: Path) -> None:
    hand = {"rule": {"family": "inet", "table": "nixos-fw", "chain": "input-allow", "handle": 77, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 3306}},
        {"accept": None},
    ]}}  # fmt: skip
    found = check(declared("nftables"), tmp_path, {"nft.json": nft_ruleset(FW, hand=[hand])})
    assert found["firewall/tcp/3306"].fix.command == "nft delete rule inet nixos-fw input-allow handle 77"


def test_snapshot_without_a_ruleset_is_unavailable(tmp_path: Path) -> None:
    section = capture_firewall.capture(Root.of(tmp_path), declared())
    assert section.data is None and section.unavailable is not None
    assert section.unavailable.startswith("no firewall ruleset")


def test_declared_backend_decides_which_capture_is_read(tmp_path: Path) -> None:
    files = {"nft.json": nft_ruleset(FW), **ipt_files()}
    for name, text in files.items():
        (tmp_path / ".nixdrift").mkdir(exist_ok=True)
        (tmp_path / ".nixdrift" / name).write_text(text)
    assert capture_firewall.capture(Root.of(tmp_path), declared("nftables")).data.backend == "nftables"  # type: ignore[union-attr]
    assert capture_firewall.capture(Root.of(tmp_path), declared()).data.backend == "iptables"  # type: ignore[union-attr]


class FakeTools:
    """The process.run seam: canned outputs per tool, ToolMissingError for the rest."""

    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(tuple(argv))
        if argv[0] not in self.outputs:
            raise ToolMissingError(f"{argv[0]!r} is not installed or not on PATH")
        return subprocess.CompletedProcess(list(argv), 0, self.outputs[argv[0]], "")


def test_live_capture_runs_nft_for_an_nftables_host(monkeypatch: pytest.MonkeyPatch) -> None:
    tools = FakeTools({"nft": nft_ruleset(FW, temp=[{"concat": ["udp", 51820]}])})
    monkeypatch.setattr(process, "run", tools)
    section = capture_firewall.capture(Root(), declared("nftables"))
    assert tools.calls == [("nft", "-j", "list", "ruleset")]
    assert list({f.id for f in compare_firewall.compare(declared("nftables"), section)}) == ["firewall/udp/51820"]


def test_live_capture_falls_back_when_no_tool_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "run", FakeTools({}))
    section = capture_firewall.capture(Root(), declared())
    assert section.unavailable == "no firewall ruleset: nft and iptables-save could not be run"


def test_snapshot_extra_writes_what_the_tools_print(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(process, "run", FakeTools({"iptables-save": iptables_save(FW)}))
    assert capture_firewall.snapshot_extra(tmp_path) == ["iptables-save.txt"]
    assert (tmp_path / ".nixdrift" / "iptables-save.txt").read_text() == iptables_save(FW)
    section = capture_firewall.capture(Root.of(tmp_path), declared())
    assert compare_firewall.compare(declared(), section) == ()


def test_port_opened_where_the_flake_adds_its_own_rules_is_high(tmp_path: Path) -> None:
    tool = "-A nixos-fw -p tcp -m tcp --dport 8888 -j nixos-fw-accept"
    found = check(declared(hasExtraRules=True), tmp_path, ipt_files(hand=[tool]))
    f = found["firewall/tcp/8888"]
    assert (f.severity, f.kind, f.evidence["rule"]) == (Severity.HIGH, Kind.UNMANAGED, "port-opened-extra")
    assert "The flake adds its own firewall rules (extraCommands/extraInputRules)" in f.message


def test_temp_port_is_low_even_where_the_flake_adds_its_own_rules(tmp_path: Path) -> None:
    """nixos-firewall-tool's temp-ports: opened on purpose, temporary (issue 10), never a hand-made hole."""
    nft = nft_ruleset(FW, temp=[{"concat": ["tcp", 8888]}])
    found = check(declared("nftables", hasExtraRules=True), tmp_path, {"nft.json": nft})
    f = found["firewall/tcp/8888"]
    assert (f.severity, f.evidence["rule"]) == (Severity.LOW, "port-temporary")
    assert "nixos-firewall-tool reset" in f.message


def test_accept_from_one_subnet_opens_every_port_there_but_keeps_the_firewall(tmp_path: Path) -> None:
    found = check(declared(), tmp_path, ipt_files(hand=["-A nixos-fw -s 10.0.0.0/8 -j nixos-fw-accept"]))
    assert list(found) == ["firewall/all/0-65535"]
    assert found["firewall/all/0-65535"].actual == "open (ipv4, ipv6; only where -s 10.0.0.0/8)"


def test_firewalld_backend_is_unavailable_not_disabled(tmp_path: Path) -> None:
    section = capture_firewall.capture(Root.of(tmp_path), declared("firewalld"))
    assert section.unavailable == "networking.firewall.backend = firewalld: only iptables and nftables are compared"
