"""Parser for `nft -j list ruleset`: the NixOS firewall as nftables holds it (see fwparse for the
records and for iptables-save). Table `inet nixos-fw`, chains `input` and `input-allow`, the set
`temp-ports` nixos-firewall-tool fills; iptables-nft rules (tables `ip filter` / `ip6 filter`) are
read the iptables way. Never raises: what it cannot read becomes a problem, the rest is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nixdrift.capture.fwparse import (
    ACCEPT_TARGETS,
    ALL_PORTS,
    IPT_CHAINS,
    PROTOS,
    REFUSE_TARGETS,
    SERVICES,
)
from nixdrift.capture.parsed import Parsed
from nixdrift.declared.model import PortRange
from nixdrift.live.firewall import FwAccept, FwBase, FwRecord, norm_iface, ports_text


def _port_value(value: Any) -> PortRange:
    match value:
        case bool():
            raise ValueError(f"not a port: {value!r}")
        case int() if 0 <= value <= 65535:
            return PortRange(value, value)
        case str() if value.isdigit():
            return _port_value(int(value))
        case str() if value in SERVICES:
            return _port_value(SERVICES[value])
        case {"range": [lo, hi]}:
            start, end = _port_value(lo).start, _port_value(hi).end
            if start > end:
                raise ValueError(f"empty port range {value!r}")
            return PortRange(start, end)
        case {"elem": {"val": val}}:
            return _port_value(val)
    raise ValueError(f"not a port: {str(value)[:80]}")


def _port_values(right: Any) -> tuple[PortRange, ...]:
    if isinstance(right, dict) and isinstance(right.get("set"), list):
        return tuple(_port_value(v) for v in right["set"])
    return (_port_value(right),)


def _strings(right: Any) -> tuple[str, ...]:
    if isinstance(right, str):
        return (right,)
    if isinstance(right, dict) and isinstance(right.get("set"), list):
        return tuple(str(v) for v in right["set"])
    raise ValueError(f"not a name or set of names: {str(right)[:80]}")


def _proto(value: Any) -> str:
    return PROTOS.get(str(value).lower(), str(value).lower())


@dataclass(slots=True)
class _NftRule:
    protos: tuple[str, ...] = ()
    ports: tuple[PortRange, ...] = ()
    ifaces: tuple[str, ...] = ()
    set_ref: str = ""  # "@name" matched by proto . port or by port
    set_is_concat: bool = False
    accept: bool = False
    stateful: bool = False
    other_proto: bool = False
    conditions: tuple[str, ...] = ()


def expr_text(value: Any) -> str:
    """An nft JSON expression as nft would print it (near enough for a person to read)."""
    match value:
        case {"payload": {"protocol": proto, "field": name}}:
            return f"{proto} {name}"
        case {"meta": {"key": key}}:
            return f"meta {key}"
        case {"prefix": {"addr": addr, "len": length}}:
            return f"{addr}/{length}"
        case {"range": [lo, hi]}:
            return f"{expr_text(lo)}-{expr_text(hi)}"
        case {"set": list() as items}:
            return "{ " + ", ".join(expr_text(i) for i in items) + " }"
        case {"concat": list() as items}:
            return " . ".join(expr_text(i) for i in items)
        case str() | int() | float():
            return str(value)
    return json.dumps(value, sort_keys=True)


def _nft_match(rule: _NftRule, m: dict[str, Any], conds: list[str]) -> None:
    left, right, op = m.get("left"), m.get("right"), m.get("op", "==")
    payload = left.get("payload") if isinstance(left, dict) else None
    meta = left.get("meta") if isinstance(left, dict) else None
    if op not in ("==", "in"):
        conds.append(f"{expr_text(left)} {op} {expr_text(right)}")
        if isinstance(payload, dict) and payload.get("protocol") in ("icmp", "icmpv6"):
            rule.other_proto = True
        return
    dport = isinstance(payload, dict) and payload.get("field") == "dport"
    if dport and isinstance(payload, dict) and payload.get("protocol") in ("tcp", "udp", "th"):
        if payload["protocol"] != "th":
            rule.protos = (str(payload["protocol"]),)
        if isinstance(right, str) and right.startswith("@"):
            rule.set_ref = right
        else:
            rule.ports = _port_values(right)
    elif isinstance(payload, dict) and payload.get("protocol") in ("icmp", "icmpv6"):
        rule.other_proto = True
    elif isinstance(meta, dict) and meta.get("key") == "l4proto":
        rule.protos = (_proto(right),) if isinstance(right, int) else tuple(_proto(p) for p in _strings(right))
    elif isinstance(meta, dict) and meta.get("key") == "iifname":
        rule.ifaces = tuple(norm_iface(i) for i in _strings(right))
    elif isinstance(left, dict) and "concat" in left and isinstance(right, str) and right.startswith("@"):
        rule.set_ref, rule.set_is_concat = right, True
    elif isinstance(left, dict) and isinstance(left.get("ct"), dict) and left["ct"].get("key") == "state":
        states = right if isinstance(right, list) else [right]
        rule.stateful = "new" not in [str(s) for s in states]
    else:
        conds.append(f"{expr_text(left)} {op} {expr_text(right)}")


def _nft_rule(expr: Any) -> _NftRule:
    if not isinstance(expr, list):
        raise ValueError("rule without an expression list")
    rule = _NftRule()
    conds: list[str] = []
    for item in expr:
        if not isinstance(item, dict) or len(item) != 1:
            raise ValueError(f"odd expression {str(item)[:80]}")
        ((key, body),) = item.items()
        match key:
            case "match" if isinstance(body, dict):
                _nft_match(rule, body, conds)
            case "accept":
                rule.accept = True
            case "jump" | "goto" if isinstance(body, dict):
                target = body.get("target")  # iptables-nft: -j nixos-fw-accept
                rule.accept = isinstance(target, str) and target in ACCEPT_TARGETS
            case "counter" | "log" | "comment":
                pass
            case "xt" if isinstance(body, dict):
                _nft_xt(rule, body, conds)
            case "vmap" | "drop" | "reject" | "return" | "queue":
                rule.accept = False
            case _:
                conds.append(str(key))
    if rule.protos and not set(rule.protos) & {"tcp", "udp"}:
        rule.other_proto = True  # meta l4proto icmp / icmpv6 ...: ping and neighbour discovery, not ports
    rule.protos = tuple(p for p in rule.protos if p in ("tcp", "udp"))
    rule.conditions = tuple(conds)
    return rule


def _nft_xt(rule: _NftRule, body: dict[str, Any], conds: list[str]) -> None:
    """An iptables extension that iptables-nft could not translate: nft JSON shows only its name.

    `-m conntrack --ctstate ESTABLISHED,RELATED` (the rule NixOS puts in nixos-fw) shows as a
    bare `xt conntrack`; on a rule that also matches a port it is a `--ctstate NEW` opening.
    """
    name = str(body.get("name"))
    if body.get("type") != "match" or name == "comment":
        return
    if name in ("conntrack", "state") and not (rule.protos or rule.ports or rule.ifaces or rule.set_ref or conds):
        rule.stateful = True
    elif name == "multiport":
        raise ValueError("iptables multiport match hides its ports from nft; read iptables-save instead")
    elif name not in ("conntrack", "state", "tcp", "udp"):
        conds.append(f"xt {name}")


def _unwrap(value: Any) -> Any:
    while isinstance(value, dict) and "elem" in value:
        inner = value["elem"]
        value = inner.get("val") if isinstance(inner, dict) else inner
    return value


def _set_elements(elems: Any, concat: bool) -> Iterator[tuple[str | None, PortRange, Any]]:
    """(proto or None, ports, the element as nft writes it) for each element of a port set."""
    for raw in elems if isinstance(elems, list) else ():
        value = _unwrap(raw)
        if concat:
            parts = value.get("concat") if isinstance(value, dict) else None
            if not isinstance(parts, list) or len(parts) != 2:
                raise ValueError(f"set element is not proto . port: {str(value)[:80]}")
            yield _proto(parts[0]), _port_value(parts[1]), value
        else:
            yield None, _port_value(value), value


def _element_text(proto: str | None, ports: PortRange) -> str:
    port = str(ports.start) if ports.start == ports.end else f"{ports.start}-{ports.end}"
    return f"{{ {proto} . {port} }}" if proto else f"{{ {port} }}"


@dataclass(frozen=True, slots=True)
class _Scope:
    family: str  # as FwBase names it
    nft_family: str
    table: str
    chains: frozenset[str]  # chains whose accepts open ports


def _scopes(tables: set[tuple[str, str]], chains: dict[tuple[str, str, str], dict[str, Any]]) -> list[_Scope]:
    scopes: list[_Scope] = []
    if ("inet", "nixos-fw") in tables:
        hooked = {n for (f, t, n), c in chains.items() if (f, t) == ("inet", "nixos-fw") and c.get("hook") == "input"}
        scopes.append(_Scope("inet", "inet", "nixos-fw", frozenset(hooked | {"input-allow"})))
    for fam, name in (("ip", "ipv4"), ("ip6", "ipv6")):
        if (fam, "filter", "nixos-fw") in chains:  # iptables-nft: the iptables firewall seen by nft
            scopes.append(_Scope(name, fam, "filter", IPT_CHAINS))
    return scopes


def _nft_base(
    scope: _Scope, chains: dict[tuple[str, str, str], dict[str, Any]], targets: dict[str, set[str]]
) -> FwBase:
    if scope.table == "nixos-fw":
        inputs = [c for (f, t, _), c in chains.items() if (f, t) == ("inet", "nixos-fw") and c.get("hook") == "input"]
        refuses = any(c.get("policy") == "drop" for c in inputs)
        detail = "" if inputs else "table inet nixos-fw has no input hook chain"
        if inputs and not refuses:
            detail = "the input chain of table inet nixos-fw does not drop by policy"
        return FwBase("inet", bool(inputs), refuses, detail)
    hooked = "nixos-fw" in targets.get("INPUT", set())
    refuses = bool(targets.get("nixos-fw", set()) & REFUSE_TARGETS)
    detail = "" if hooked else "chain nixos-fw is not jumped to from INPUT"
    if hooked and not refuses:
        detail = "chain nixos-fw no longer refuses what it does not accept"
    return FwBase(scope.family, hooked, refuses, detail)


def _rule_text(rule: _NftRule, proto: str | None, ports: tuple[PortRange, ...], iface: str | None) -> str:
    words = [f'iifname "{iface}"'] if iface else []
    if rule.set_ref:
        words.append(f"{'meta l4proto . th dport' if rule.set_is_concat else f'{proto} dport'} {rule.set_ref}")
    elif proto:
        words.append(f"{proto} dport {{ {ports_text(ports)} }}")
    return " ".join([*words, *rule.conditions, "accept"])


def _nft_accepts(
    scope: _Scope, body: dict[str, Any], rule: _NftRule, sets: dict[tuple[str, str, str], Any]
) -> Iterator[FwAccept]:
    handle = str(body.get("handle", ""))
    delete_rule = ("nft", "delete", "rule", scope.nft_family, scope.table, str(body.get("chain")), "handle", handle)
    conditions = " ".join(rule.conditions)
    ifaces: tuple[str | None, ...] = rule.ifaces or (None,)
    if rule.set_ref:
        name = rule.set_ref[1:]
        for proto, ports, value in _set_elements(sets.get((scope.nft_family, scope.table, name)), rule.set_is_concat):
            delete = ("nft", "delete", "element", scope.nft_family, scope.table, name, _element_text(proto, ports))
            for p in (proto,) if proto else rule.protos or ("tcp", "udp"):
                for iface in ifaces:
                    text = f"{_rule_text(rule, p, (ports,), iface)} ({name}: {expr_text(value)})"
                    yield FwAccept(scope.family, p, (ports,), iface, conditions, name, delete, text)
        return
    protos: tuple[str | None, ...] = rule.protos or (("tcp", "udp") if rule.ports else (None,))
    for proto in protos:
        ranges = rule.ports or ((ALL_PORTS,) if proto else ())
        for iface in ifaces:
            text = _rule_text(rule, proto, ranges, iface)
            yield FwAccept(scope.family, proto, ranges, iface, conditions, "rule", delete_rule, text)


def parse_nft_json(text: str) -> tuple[tuple[FwRecord, ...], tuple[str, ...]]:
    """Records of `nft -j list ruleset` output."""
    parsed = read_nft_json(text)
    return parsed.records, parsed.all_problems


def read_nft_json(text: str) -> Parsed[FwRecord]:
    """Records and problems; `unreadable` when the output is not a ruleset at all (cut short, not JSON)."""
    try:
        doc = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        return Parsed((), (), f"nft.json:1: not JSON (cut short?): {str(exc)[:120]}")
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return Parsed((), (), 'nft.json:1: no "nftables" list')
    problems: list[str] = []
    voiding: list[str] = []
    tables: set[tuple[str, str]] = set()
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    sets: dict[tuple[str, str, str], Any] = {}
    rules: list[tuple[int, dict[str, Any]]] = []
    for index, item in enumerate(items, 1):
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(f"nft.json:{index}: not a single-key object")
            continue
        ((kind, body),) = item.items()
        if not isinstance(body, dict):
            problems.append(f"nft.json:{index}: {kind} is not an object")
            continue
        where = (str(body.get("family")), str(body.get("table")), str(body.get("name")))
        match kind:
            case "table":
                tables.add((str(body.get("family")), str(body.get("name"))))
            case "chain":
                chains[where] = body
            case "set":
                sets[where] = body.get("elem")
            case "rule":
                rules.append((index, body))
    records: list[FwRecord] = []
    for scope in _scopes(tables, chains):
        targets: dict[str, set[str]] = {}
        accepts: list[FwAccept] = []
        for index, body in rules:
            if (body.get("family"), body.get("table")) != (scope.nft_family, scope.table):
                continue
            chain = str(body.get("chain"))
            targets.setdefault(chain, set()).update(_jump_targets(body.get("expr")))
            if chain not in scope.chains:
                continue  # prerouting, forward, output...: they open no input port
            try:
                rule = _nft_rule(body.get("expr"))
                if rule.accept and not rule.stateful and not rule.other_proto:
                    accepts.extend(_nft_accepts(scope, body, rule, sets))
            except (ValueError, TypeError, RecursionError) as exc:
                problems.append(f"nft.json:{index}: {str(exc)[:160]}")
                if _accepts(body.get("expr")):
                    voiding.append(f"nft.json:{index}: a rule that accepts traffic cannot be read: {str(exc)[:160]}")
        records.append(_nft_base(scope, chains, targets))
        records.extend(accepts)
    return Parsed(tuple(records), tuple(problems), voiding=tuple(voiding))


def _accepts(expr: Any) -> bool:
    """Does a rule (that could not be read) end in accepting the packet?"""
    for item in expr if isinstance(expr, list) else ():
        if not isinstance(item, dict):
            continue
        if "accept" in item:
            return True
        for key in ("jump", "goto"):
            body = item.get(key)
            target = body.get("target") if isinstance(body, dict) else None
            if isinstance(target, str) and target in ACCEPT_TARGETS:
                return True
    return False


def _jump_targets(expr: Any) -> set[str]:
    found: set[str] = set()
    for item in expr if isinstance(expr, list) else ():
        for key in ("jump", "goto"):
            body = item.get(key) if isinstance(item, dict) else None
            if isinstance(body, dict):
                found.add(str(body.get("target")))
        if isinstance(item, dict) and ("drop" in item or "reject" in item):
            found.add("DROP")
    return found
