"""The fleet view: every host's PolicyReport, how old it is, and the drift several hosts share.

`aggregate` is pure (the reports and the clock come in); `list_policy_reports` reads them from the
API server page by page; `render` prints the view as a table, JSON or Markdown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nixdrift.models import Severity
from nixdrift.sinks.kube import ANN, GROUP, PLURAL, SELECTOR, SENT_AT, VERSION

FORMATS = ("table", "json", "markdown")
SUMMARY_KEYS = ("fail", "warn", "error", "skip", "pass")
DEFAULT_HEARTBEAT = 3600
_LEVEL = {s.label: s.value for s in Severity}


@dataclass(frozen=True, slots=True)
class HostStatus:
    host: str
    namespace: str
    name: str
    summary: Mapping[str, int]
    last_report: str  # ISO time of the newest report (sent or scanned), "" when unknown
    age: float | None  # seconds since then
    heartbeat: int
    stale: bool  # silent for more than two heartbeats
    truncated: bool
    agent_version: str


@dataclass(frozen=True, slots=True)
class SharedDrift:
    rule: str  # the finding id
    policy: str  # its category
    severity: str  # the worst severity seen on any host
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FleetView:
    generated_at: str
    hosts: tuple[HostStatus, ...]
    shared: tuple[SharedDrift, ...]

    @property
    def stale(self) -> tuple[HostStatus, ...]:
        return tuple(h for h in self.hosts if h.stale)


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _last_report(obj: Mapping[str, Any]) -> datetime | None:
    """When the host last spoke: the sent-at or scan-time annotation, else the apply time."""
    meta = obj.get("metadata") or {}
    ann = meta.get("annotations") or {}
    times = [_parse_time(ann.get(SENT_AT)), _parse_time(ann.get(ANN + "scan-time"))]
    times += [_parse_time(m.get("time")) for m in meta.get("managedFields") or [] if m.get("manager") == "nixdrift"]
    known = [t for t in times if t is not None]
    return max(known) if known else _parse_time(meta.get("creationTimestamp"))


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def host_status(obj: Mapping[str, Any], now: datetime, heartbeat: int | None) -> HostStatus:
    meta = obj.get("metadata") or {}
    ann = meta.get("annotations") or {}
    raw = obj.get("summary") or {}
    beat = heartbeat or _int(ann.get(ANN + "heartbeat"), DEFAULT_HEARTBEAT)
    last = _last_report(obj)
    age = (now - last).total_seconds() if last else None
    return HostStatus(
        host=str(ann.get(ANN + "host") or (obj.get("scope") or {}).get("name") or meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        summary={k: _int(raw.get(k, 0), 0) for k in SUMMARY_KEYS},
        last_report=_iso(last) if last else "",
        age=age,
        heartbeat=beat,
        stale=age is None or age > 2 * beat,
        truncated=ann.get(ANN + "truncated") == "true",
        agent_version=str(ann.get(ANN + "agent-version", "")),
    )


def aggregate(
    reports: Iterable[Mapping[str, Any]],
    now: datetime,
    heartbeat: int | None = None,
    min_hosts: int = 2,
) -> FleetView:
    """One pass over the reports; `heartbeat` overrides each host's own (its annotation)."""
    hosts: list[HostStatus] = []
    seen: dict[str, tuple[str, int, list[str]]] = {}  # rule -> policy, worst severity, hosts
    for obj in reports:
        if ((obj.get("metadata") or {}).get("labels") or {}).get("nixdrift/scope") == "cluster":
            continue  # a cluster's report (`nixdrift kube`, one per namespace) is not a host
        status = host_status(obj, now, heartbeat)
        hosts.append(status)
        for result in obj.get("results") or ():
            if result.get("result") not in ("fail", "warn"):
                continue
            rule = str(result.get("rule") or result.get("policy", ""))
            level = _LEVEL.get(result.get("severity"), 0)
            entry = seen.get(rule)
            if entry is None:
                seen[rule] = (str(result.get("policy", "")), level, [status.host])
            else:
                entry[2].append(status.host)
                if level > entry[1]:
                    seen[rule] = (entry[0], level, entry[2])
    shared = [
        SharedDrift(rule=rule, policy=policy, severity=Severity(level).label, hosts=tuple(sorted(set(names))))
        for rule, (policy, level, names) in seen.items()
        if len(set(names)) >= min_hosts
    ]
    shared.sort(key=lambda s: (-len(s.hosts), -Severity.parse(s.severity).value, s.rule))
    hosts.sort(key=lambda h: (h.host, h.namespace))
    return FleetView(generated_at=_iso(now), hosts=tuple(hosts), shared=tuple(shared))


def list_policy_reports(api: Any, namespace: str | None, *, page: int = 500, timeout: float = 30) -> Iterator[Any]:
    """Every nixdrift PolicyReport, in all namespaces or one, page by page."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    token: str | None = None
    while True:
        kw: dict[str, Any] = {"label_selector": SELECTOR, "limit": page, "_request_timeout": timeout}
        if token:
            kw["_continue"] = token
        resp: Any
        if namespace:
            resp = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kw)
        else:
            resp = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw)
        yield from resp.get("items") or ()
        token = (resp.get("metadata") or {}).get("continue")
        if not token:
            return


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def to_json(view: FleetView) -> dict[str, Any]:
    return {
        "generated_at": view.generated_at,
        "hosts": [
            {
                "host": h.host,
                "namespace": h.namespace,
                "name": h.name,
                "summary": dict(h.summary),
                "last_report": h.last_report,
                "age_seconds": None if h.age is None else int(h.age),
                "heartbeat": h.heartbeat,
                "stale": h.stale,
                "truncated": h.truncated,
                "agent_version": h.agent_version,
            }
            for h in view.hosts
        ],
        "stale": [h.host for h in view.stale],
        "shared_drift": [
            {"id": s.rule, "category": s.policy, "severity": s.severity, "count": len(s.hosts), "hosts": list(s.hosts)}
            for s in view.shared
        ],
    }


def _host_rows(view: FleetView) -> list[list[str]]:
    return [
        [
            h.host,
            *(str(h.summary[k]) for k in SUMMARY_KEYS),
            age_text(h.age),
            "STALE" if h.stale else "ok",
            "truncated" if h.truncated else "",
        ]
        for h in view.hosts
    ]


def _shared_rows(view: FleetView, limit: int) -> list[list[str]]:
    def names(hosts: tuple[str, ...]) -> str:
        head = ", ".join(hosts[:5])
        return head + (f" (+{len(hosts) - 5})" if len(hosts) > 5 else "")

    return [[str(len(s.hosts)), s.severity, s.rule, names(s.hosts)] for s in view.shared[:limit]]


HOST_HEAD = ["HOST", "FAIL", "WARN", "ERROR", "SKIP", "PASS", "AGE", "STATE", "NOTE"]
SHARED_HEAD = ["HOSTS", "SEVERITY", "FINDING", "ON"]


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows])


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render(view: FleetView, fmt: str, shared_limit: int = 50) -> str:
    match fmt:
        case "json":
            return json.dumps(to_json(view), indent=2, sort_keys=True) + "\n"
        case "markdown":
            out = [f"# nixdrift fleet ({len(view.hosts)} hosts, {len(view.stale)} stale)", ""]
            out += [_markdown([h.lower() for h in HOST_HEAD], _host_rows(view)), ""]
            if view.shared:
                out += ["## Drift shared by several hosts", ""]
                out += [_markdown([h.lower() for h in SHARED_HEAD], _shared_rows(view, shared_limit)), ""]
            return "\n".join(out)
        case "table":
            out = [f"{len(view.hosts)} hosts, {len(view.stale)} stale (as of {view.generated_at})", ""]
            out += [_table(HOST_HEAD, _host_rows(view)) if view.hosts else "no nixdrift PolicyReports found"]
            if view.shared:
                out += ["", "Drift shared by several hosts:", _table(SHARED_HEAD, _shared_rows(view, shared_limit))]
            return "\n".join(out) + "\n"
        case _:
            raise ValueError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")
