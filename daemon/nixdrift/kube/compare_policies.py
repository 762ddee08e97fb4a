"""Pure comparison of NetworkPolicies and RBAC objects with their manifests.

Rules are matched, not indexed: a declared rule is kept when some live rule holds everything it
sets (server defaults such as a port's `protocol: TCP` aside), so reordering is not drift. A
declared rule no live rule matches was removed or changed; a live rule no declared rule matches
was added.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from nixdrift.kube.attribution import attribute
from nixdrift.kube.compare_workloads import apply_command
from nixdrift.kube.diff import covers, diff
from nixdrift.kube.model import KubeObject
from nixdrift.kube.rules import kfinding
from nixdrift.models import Category, Finding, Kind


def _rule_id(rule: Any) -> str:
    return hashlib.sha256(json.dumps(rule, sort_keys=True).encode()).hexdigest()[:10]


def _short(rule: Any) -> str:
    return json.dumps(rule, sort_keys=True, separators=(",", ":"))


def match_rules(declared: Sequence[Any], live: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """(declared rules no live rule covers, live rules no declared rule claimed)."""
    unused = list(range(len(live)))
    removed: list[Any] = []
    for rule in declared:
        hit = next((i for i in unused if _same(rule, live[i])), None)
        if hit is None:
            removed.append(rule)
        else:
            unused.remove(hit)
    return removed, [live[i] for i in unused]


def _same(declared: Any, live: Any) -> bool:
    """Live equals declared plus only server defaults: it covers the declaration, and what it adds
    is a default (a port protocol TCP, an ipBlock's empty `except`)."""
    return covers(declared, live) and covers(_without_defaults(live), declared)


_DEFAULTS = frozenset({("protocol", "TCP"), ("apiGroup", "rbac.authorization.k8s.io"), ("apiGroup", "")})


def _default(key: str, value: Any) -> bool:
    return value in ([], {}, None) or (isinstance(value, str) and (key, value) in _DEFAULTS)


def _without_defaults(rule: Any) -> Any:
    if isinstance(rule, Mapping):
        return {k: _without_defaults(v) for k, v in rule.items() if not _default(k, v)}
    if isinstance(rule, list):
        return [_without_defaults(v) for v in rule]
    return rule


def _evidence(declared: KubeObject, live: KubeObject, field: tuple[str, ...]) -> dict[str, str]:
    ev = {"object": str(live.key), "field": ".".join(field)}
    if declared.source:
        ev["manifest"] = declared.source
    who = attribute(live.body, field)
    if who is not None:
        ev.update(who.evidence())
    return ev


def network_policy(declared: KubeObject, live: KubeObject) -> list[Finding]:
    key = declared.key
    out: list[Finding] = []
    dspec, lspec = declared.spec, live.spec
    if diff(dspec.get("podSelector") or {}, lspec.get("podSelector") or {}) or diff(
        lspec.get("podSelector") or {}, dspec.get("podSelector") or {}
    ):
        ev = _evidence(declared, live, ("spec", "podSelector"))
        out.append(
            kfinding(
                rule_name="kube-netpol-selector",
                id=f"kube-network-policies/{key.id_part}/podSelector",
                category=Category.KUBE_NETWORK_POLICIES,
                subject=f"{key} podSelector",
                kind=Kind.CHANGED,
                expected=_short(dspec.get("podSelector") or {}),
                actual=_short(lspec.get("podSelector") or {}),
                message=f"{key} selects other pods than declared",
                command=apply_command(declared),
                evidence=ev,
            )
        )
    if "policyTypes" in dspec:
        want, got = set(dspec.get("policyTypes") or []), set(lspec.get("policyTypes") or [])
        for gone in sorted(want - got):
            out.append(_np_rule(declared, live, "kube-netpol-rule-removed", "policyTypes", gone, None))
        for extra in sorted(got - want):
            out.append(_np_rule(declared, live, "kube-netpol-rule-added", "policyTypes", None, extra))
    for direction in ("ingress", "egress"):
        if direction not in dspec and direction not in lspec:
            continue
        removed, added = match_rules(dspec.get(direction) or [], lspec.get(direction) or [])
        out.extend(_np_rule(declared, live, "kube-netpol-rule-removed", direction, r, None) for r in removed)
        out.extend(_np_rule(declared, live, "kube-netpol-rule-added", direction, None, r) for r in added)
    return out


def _np_rule(declared: KubeObject, live: KubeObject, rule: str, direction: str, want: Any, got: Any) -> Finding:
    key = declared.key
    ev = _evidence(declared, live, ("spec", direction))
    what = "removed or changed" if got is None else "added"
    return kfinding(
        rule_name=rule,
        id=f"kube-network-policies/{key.id_part}/{direction}/{_rule_id(want if got is None else got)}",
        category=Category.KUBE_NETWORK_POLICIES,
        subject=f"{key} {direction}",
        kind=Kind.MISSING if got is None else Kind.UNMANAGED,
        expected=_short(want) if want is not None else "(absent)",
        actual=_short(got) if got is not None else "(absent)",
        message=f"{key}: {direction} rule {what}: {_short(want if got is None else got)}",
        command=apply_command(declared),
        evidence=ev,
    )


def rbac(declared: KubeObject, live: KubeObject) -> list[Finding]:
    key = declared.key
    out: list[Finding] = []
    pairs: list[tuple[str, Any, Any]] = []
    if key.kind in ("Role", "ClusterRole"):
        if not (key.kind == "ClusterRole" and declared.body.get("aggregationRule")):  # a controller fills those rules
            pairs.append(("rules", declared.body.get("rules") or [], live.body.get("rules") or []))
    else:
        pairs.append(("subjects", declared.body.get("subjects") or [], live.body.get("subjects") or []))
        if diff(declared.body.get("roleRef") or {}, live.body.get("roleRef") or {}):
            ev = _evidence(declared, live, ("roleRef",))
            out.append(
                kfinding(
                    rule_name="kube-rbac-changed",
                    id=f"kube-rbac/{key.id_part}/roleRef",
                    category=Category.KUBE_RBAC,
                    subject=f"{key} roleRef",
                    kind=Kind.CHANGED,
                    expected=_short(declared.body.get("roleRef")),
                    actual=_short(live.body.get("roleRef")),
                    message=f"{key} refers to another role than declared",
                    command=apply_command(declared),
                    evidence=ev,
                )
            )
    for field, want, got in pairs:
        removed, added = match_rules(want, got)
        for item, gone in [(r, True) for r in removed] + [(a, False) for a in added]:
            ev = _evidence(declared, live, (field,))
            noun = "rule" if field == "rules" else "subject"
            out.append(
                kfinding(
                    rule_name="kube-rbac-changed",
                    id=f"kube-rbac/{key.id_part}/{field}/{_rule_id(item)}",
                    category=Category.KUBE_RBAC,
                    subject=f"{key} {field}",
                    kind=Kind.MISSING if gone else Kind.UNMANAGED,
                    expected=_short(item) if gone else "(absent)",
                    actual="(absent)" if gone else _short(item),
                    message=f"{key}: {noun} {'removed or changed' if gone else 'added'}: {_short(item)}",
                    command=apply_command(declared),
                    evidence=ev,
                )
            )
    return out
