"""The NixOS firewall as the kernel holds it: the records both parsers produce, and the parser of
`iptables-save` text (nftparse reads `nft -j list ruleset`).

Both reduce a ruleset to what nixdrift compares: whether the NixOS firewall is in place
(`FwBase`, one per address family) and every rule or set element that accepts new traffic
(`FwAccept`). Rule shapes follow nixpkgs' firewall-iptables.nix (chain `nixos-fw`, jumps to
`nixos-fw-accept`), firewall-nftables.nix (table `inet nixos-fw`, chains `input` and
`input-allow`) and nixos-firewall-tool (set `temp-ports` of `proto . port`). iptables-nft rules
listed through `nft -j` (tables `ip filter` / `ip6 filter`) are read the iptables way.

Parsers never raise: a line or object they cannot read becomes a problem and the rest is kept.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from nixdrift.capture.parsed import Parsed
from nixdrift.declared.model import PortRange
from nixdrift.live.firewall import FwAccept, FwBase, FwRecord

ALL_PORTS = PortRange(0, 65535)
ACCEPT_TARGETS = frozenset({"ACCEPT", "nixos-fw-accept"})
REFUSE_TARGETS = frozenset({"nixos-fw-log-refuse", "nixos-fw-refuse", "DROP", "REJECT"})
IPT_CHAINS = frozenset({"INPUT", "nixos-fw"})  # where NixOS (and a hand edit) accepts input
PROTOS = {"6": "tcp", "17": "udp", "tcp": "tcp", "udp": "udp"}
_ANY_PROTO = frozenset({"all", "0"})  # `-p all` matches every protocol, as no -p does
SERVICES = {"ssh": 22, "http": 80, "https": 443, "domain": 53, "ntp": 123}
# iptables match modules that only introduce the options parsed here
_PLAIN_MODULES = frozenset({"tcp", "udp", "multiport", "comment", "conntrack", "state"})


# ---------------------------------------------------------------- iptables-save


def _port_range(text: str) -> PortRange:
    lo, sep, hi = text.partition(":")
    start = int(lo) if lo else 0
    end = (int(hi) if hi else 65535) if sep else start
    if not (0 <= start <= end <= 65535):
        raise ValueError(f"bad port range {text!r}")
    return PortRange(start, end)


@dataclass(slots=True)
class _IptRule:
    proto: str | None = None
    ports: tuple[PortRange, ...] = ()
    interface: str | None = None
    target: str = ""
    stateful: bool = False
    conditions: tuple[str, ...] = ()


def _ipt_rule(tokens: list[str]) -> _IptRule:
    rule = _IptRule()
    conds: list[str] = []
    i, negate = 0, False
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok == "!":
            negate = True
            continue
        value = ""
        if i < len(tokens) and not tokens[i].startswith("-") and tokens[i] != "!":
            value = tokens[i]
            i += 1
        if negate:  # a negated match narrows the rule; it never selects ports
            conds.append(" ".join(("!", tok, value)).strip())
            negate = False
            continue
        match tok:
            case "-p" | "--protocol":
                proto = value.lower()
                rule.proto = None if proto in _ANY_PROTO else PROTOS.get(proto, proto)
            case "-i" | "--in-interface":
                rule.interface = value
            case "-j" | "--jump" | "-g" | "--goto":
                rule.target = value
            case "--dport" | "--destination-port":
                rule.ports = (_port_range(value),)
            case "--dports" | "--destination-ports":
                rule.ports = tuple(_port_range(p) for p in value.split(","))
            case "-m" | "--match" if value in _PLAIN_MODULES:
                pass
            case "--comment":
                pass
            case "--ctstate" | "--state":
                # NEW (what "open" means anyway) is no narrowing; ESTABLISHED,RELATED is no opening
                rule.stateful = "NEW" not in value.upper().split(",")
            case _:
                conds.append(f"{tok} {value}".strip())
    rule.conditions = tuple(conds)
    return rule


def _ipt_accept(family: str, table: str, chain: str, args: list[str], line: str) -> FwAccept | None:
    rule = _ipt_rule(args)
    if table != "filter" or chain not in IPT_CHAINS or rule.target not in ACCEPT_TARGETS or rule.stateful:
        return None
    if rule.proto is not None and rule.proto not in ("tcp", "udp"):
        return None  # icmp, icmpv6 and friends: ping and neighbour discovery, not ports
    tool = "ip6tables" if family == "ipv6" else "iptables"
    return FwAccept(
        family=family,
        proto=rule.proto,
        ports=rule.ports or ((ALL_PORTS,) if rule.proto else ()),
        interface=rule.interface,
        conditions=" ".join(rule.conditions),
        origin="rule",
        revert=(tool, "-t", table, "-D", chain, *args),
        text=line,
    )


def parse_iptables_save(text: str, family: str = "ipv4") -> tuple[tuple[FwRecord, ...], tuple[str, ...]]:
    """Records of one `iptables-save` (family "ipv4") or `ip6tables-save` ("ipv6") output."""
    parsed = read_iptables_save(text, family)
    return parsed.records, parsed.all_problems


def read_iptables_save(text: str, family: str = "ipv4") -> Parsed[FwRecord]:
    """Records and problems; `unreadable` when a table is cut short (iptables-save ends each with COMMIT)."""
    name = "ip6tables-save" if family == "ipv6" else "iptables-save"
    records: list[FwRecord] = []
    problems: list[str] = []
    table = ""
    uncommitted: list[tuple[int, str]] = []  # (line, table) opened and not yet committed
    voiding: list[str] = []
    chains: dict[str, str] = {}  # filter chain -> policy
    input_jumps: set[str] = set()
    fw_targets: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line == "COMMIT":
            uncommitted.clear()
            continue
        if not line or line.startswith("#"):
            continue
        try:
            if line.startswith("*"):
                table = line[1:].strip()
                uncommitted.append((lineno, table))
            elif line.startswith(":"):
                chain, _, rest = line[1:].partition(" ")
                if table == "filter":
                    chains[chain] = rest.split(" ")[0]
            elif line.startswith("-A ") or line.startswith("-I "):
                tokens = shlex.split(line)
                if len(tokens) < 2:
                    raise ValueError("rule without a chain")
                chain, args = tokens[1], tokens[2:]
                if not table:
                    raise ValueError("rule outside a table")
                target = _ipt_rule(args).target
                if table == "filter" and chain == "INPUT":
                    input_jumps.add(target)
                if table == "filter" and chain == "nixos-fw":
                    fw_targets.add(target)
                accept = _ipt_accept(family, table, chain, args, line)
                if accept is not None:
                    records.append(accept)
            else:
                raise ValueError("not a table, chain or rule line")
        except ValueError as exc:
            problems.append(f"{name}:{lineno}: {exc}")
            words = line.split()
            if table == "filter" and words[1:2] and words[1] in IPT_CHAINS and ACCEPT_TARGETS & set(words):
                voiding.append(f"{name}:{lineno}: a rule that accepts traffic cannot be read: {exc}")
    if "nixos-fw" in chains:
        hooked = "nixos-fw" in input_jumps
        refuses = bool(fw_targets & REFUSE_TARGETS) or chains.get("INPUT") in ("DROP", "REJECT")
        detail = "" if hooked else "chain nixos-fw is not jumped to from INPUT"
        if hooked and not refuses:
            detail = "chain nixos-fw no longer refuses what it does not accept"
        records.insert(0, FwBase(family, hooked, refuses, detail))
    cut = next(iter(uncommitted), None)
    unreadable = f"{name}:{cut[0]}: table {cut[1][:40]!r} has no COMMIT: the output is cut short" if cut else None
    if not table and problems:  # nothing but lines it cannot read: some other file
        unreadable = f"{name}: no table in it: not {name} output"
    return Parsed(tuple(records), tuple(problems), unreadable, voiding=tuple(voiding))
