"""Pure comparison of one declared object with its live counterpart (workloads, HPAs, Services,
ConfigMaps): resources (DRIFT_UP / DRIFT_DOWN), env, images, CronJob fields, and the rest of the
fields the manifest sets. NetworkPolicies, RBAC and Secrets have their own comparators."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from nixdrift.kube import quantity
from nixdrift.kube.attribution import attribute
from nixdrift.kube.diff import Change, Difference, Item, Path, diff, dotted, lookup
from nixdrift.kube.live import digest
from nixdrift.kube.model import KubeObject, ObjectKey
from nixdrift.kube.rules import kfinding
from nixdrift.models import Category, Finding, Kind

SECURITY_NAME = re.compile(r"key|token|auth|passw|secret|credential|cert|private", re.IGNORECASE)
CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})
TOP_IGNORED = frozenset({"apiVersion", "kind", "status"})


def apply_command(obj: KubeObject) -> str:
    """What a person runs to bring the object back to its manifest."""
    return f"kubectl apply --server-side --field-manager=nixdrift -f {shlex.quote(obj.source)}" if obj.source else ""


def delete_command(key: ObjectKey) -> str:
    ns = f" -n {shlex.quote(key.namespace)}" if key.namespace else ""
    return f"kubectl delete {key.kind.lower()} {shlex.quote(key.name)}{ns}"


def compare(declared: KubeObject, live: KubeObject, *, autoscaled: bool = False) -> list[Finding]:
    """Findings for one object in both places (`autoscaled`: an HPA owns its replica count)."""
    body = {k: v for k, v in declared.body.items() if k not in TOP_IGNORED}
    if declared.key.kind == "CronJob" and "suspend" not in declared.spec:  # unset means running: a suspension is drift
        body["spec"] = {**declared.spec, "suspend": False}
    diffs = diff(body, live.body)
    out: list[Finding] = []
    env_groups: dict[tuple[Path, str], list[Difference]] = {}
    for d in _split(diffs):
        env_at = _env_var(d.path)
        if env_at is not None:
            env_groups.setdefault(env_at, []).append(d)
            continue
        if autoscaled and d.path == ("spec", "replicas"):
            continue
        out.append(_classify(declared, live, d))
    for (container_path, var), group in sorted(env_groups.items(), key=lambda kv: (dotted(kv[0][0]), kv[0][1])):
        out.append(_env_finding(declared, live, container_path, var, group))
    return out


def _split(diffs: Iterable[Difference]) -> Iterable[Difference]:
    """A whole `limits:`/`requests:` map gone live becomes one difference per resource."""
    for d in diffs:
        if d.path and d.path[-1] in ("limits", "requests", "resources") and isinstance(d.expected, Mapping):
            for name, value in sorted(d.expected.items()):
                if isinstance(value, Mapping):  # resources: {limits: {...}}
                    actual = d.actual.get(name) if isinstance(d.actual, Mapping) else None
                    yield from _split([Difference((*d.path, str(name)), d.change, value, actual)])
                    continue
                actual = d.actual.get(name) if isinstance(d.actual, Mapping) else None
                if not quantity.equal(value, actual):
                    yield Difference(
                        (*d.path, str(name)), Change.REMOVED if actual is None else d.change, value, actual
                    )
            continue
        yield d


def _container(path: Path) -> str:
    for i, seg in enumerate(path):
        if seg in CONTAINER_LISTS and i + 1 < len(path) and isinstance(path[i + 1], Item):
            nxt = path[i + 1]
            assert isinstance(nxt, Item)
            return nxt.value if seg == "containers" else f"{seg}/{nxt.value}"
    return ""


def _env_var(path: Path) -> tuple[Path, str] | None:
    for i, seg in enumerate(path):
        if seg == "env" and i + 1 < len(path) and isinstance(path[i + 1], Item):
            nxt = path[i + 1]
            assert isinstance(nxt, Item)
            return path[: i + 1], nxt.value
    return None


def _show(value: Any) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _evidence(declared: KubeObject, live: KubeObject, path: Path) -> dict[str, str]:
    ev = {"object": str(live.key), "field": dotted(path)}
    if declared.source:
        ev["manifest"] = declared.source
    who = attribute(live.body, path)
    if who is not None:
        ev.update(who.evidence())
    return ev


def _who(ev: Mapping[str, str]) -> str:
    if "manager" in ev:
        return f" (changed by {ev['manager']}" + (f" at {ev['changed_at']})" if ev.get("changed_at") else ")")
    return ""


def _classify(declared: KubeObject, live: KubeObject, d: Difference) -> Finding:
    key = declared.key
    path = d.path
    field = dotted(path)
    ev = _evidence(declared, live, path)
    resource = path[-1] if path else ""
    parent = path[-2] if len(path) >= 2 else ""
    container = _container(path)
    category, rule = Category.KUBE_SPEC, "kube-spec"
    subject = f"{key} {field}"
    if parent in ("limits", "requests") and isinstance(resource, str):
        rule = _direction(str(parent), d.expected, d.actual)
        category = Category.KUBE_RESOURCES
        subject = f"{key} container {container} {parent}.{resource}"
        fid = f"kube-resources/{key.id_part}/{container}/{parent}.{resource}"
        message = (
            f"{key} container {container}: {parent}.{resource} is {_show(d.actual)}, declared {_show(d.expected)}"
            f" ({'DRIFT_UP' if rule.endswith('up') else 'DRIFT_DOWN'}){_who(ev)}"
        )
    elif key.kind == "HorizontalPodAutoscaler" and path == ("spec", "maxReplicas"):
        up = (quantity.parse(d.actual) or 0) > (quantity.parse(d.expected) or 0)
        rule = "kube-hpa-drift-up" if up else "kube-hpa-drift-down"
        category = Category.KUBE_RESOURCES
        fid = f"kube-resources/{key.id_part}/maxReplicas"
        message = f"{key}: maxReplicas is {_show(d.actual)}, declared {_show(d.expected)}{_who(ev)}"
    elif key.kind == "CronJob" and path in (("spec", "schedule"), ("spec", "suspend")):
        rule = "kube-cronjob-schedule" if path[-1] == "schedule" else "kube-cronjob-suspend"
        category = Category.KUBE_CRONJOBS
        fid = f"kube-cronjobs/{key.id_part}/{path[-1]}"
        message = f"{key}: {path[-1]} is {_show(d.actual)}, declared {_show(d.expected)}{_who(ev)}"
    elif resource == "image":
        rule = "kube-cronjob-image" if key.kind == "CronJob" else "kube-image"
        category = Category.KUBE_CRONJOBS if key.kind == "CronJob" else Category.KUBE_SPEC
        fid = f"{category.value}/{key.id_part}/{container}/image"
        subject = f"{key} container {container} image"
        message = f"{key} container {container} runs {_show(d.actual)}, declared {_show(d.expected)}{_who(ev)}"
    else:
        if path == ("spec", "replicas"):
            rule = "kube-replicas"
        elif len(path) >= 2 and path[-2] in ("labels", "annotations") and "metadata" in path:
            rule = "kube-metadata"
        fid = f"kube-spec/{key.id_part}/{field}"
        what = {Change.ADDED: "was added live", Change.REMOVED: "is gone live", Change.CHANGED: "differs"}[d.change]
        message = f"{key}: {field} {what}: {_show(d.actual)}, declared {_show(d.expected)}{_who(ev)}"
    severity_low = rule in ("kube-replicas", "kube-metadata")
    return kfinding(
        rule_name=rule,
        id=fid,
        category=category,
        subject=subject,
        kind=Kind.UNMANAGED if d.change is Change.ADDED else Kind.CHANGED,
        expected=_show(d.expected),
        actual=_show(d.actual),
        message=message,
        command=apply_command(declared),
        safe=severity_low and bool(declared.source),
        evidence=ev,
    )


def _direction(which: str, expected: Any, actual: Any) -> str:
    """DRIFT_UP: more than declared (a removed limit is unlimited); DRIFT_DOWN: less (a removed
    request is nothing reserved)."""
    want, got = quantity.parse(expected), quantity.parse(actual)
    up = which == "limits" if got is None else want is None or got > want
    return "kube-resources-drift-up" if up else "kube-resources-drift-down"


def env_value(var: Any) -> str:
    """A variable as a report shows it: a literal (a digest when its name looks secret), or the
    ConfigMap/Secret key it is resolved from. A Secret's value is never read."""
    if not isinstance(var, Mapping):
        return "(absent)"
    name = str(var.get("name", ""))
    source = var.get("valueFrom")
    if isinstance(source, Mapping):
        for ref, label in (("secretKeyRef", "secret"), ("configMapKeyRef", "configmap")):
            target = source.get(ref)
            if isinstance(target, Mapping):
                return f"from {label} {target.get('name')}/{target.get('key')}"
        field = source.get("fieldRef") or source.get("resourceFieldRef")
        if isinstance(field, Mapping):
            return f"from field {field.get('fieldPath') or field.get('resource')}"
        return "from " + _show(source)
    value = var.get("value")
    if value is None:
        return '""'
    text = str(value)
    return digest(text) if SECURITY_NAME.search(name) else text


def _env_finding(
    declared: KubeObject, live: KubeObject, container_path: Path, var: str, group: list[Difference]
) -> Finding:
    key = declared.key
    container = _container(container_path)
    want = lookup(declared.body, (*container_path, Item("name", var)))
    got = lookup(live.body, (*container_path, Item("name", var)))
    changes = {d.change for d in group}
    if Change.ADDED in changes:
        what, kind = "was added live", Kind.UNMANAGED
    elif got is None:
        what, kind = "is gone live", Kind.MISSING
    else:
        what, kind = "differs", Kind.CHANGED
    ev = _evidence(declared, live, (*container_path, Item("name", var)))
    rule = "kube-env-security" if SECURITY_NAME.search(var) else "kube-env"
    return kfinding(
        rule_name=rule,
        id=f"kube-env/{key.id_part}/{container}/{var}",
        category=Category.KUBE_ENV,
        subject=f"{key} container {container} env {var}",
        kind=kind,
        expected=env_value(want) if want is not None else "(absent)",
        actual=env_value(got) if got is not None else "(absent)",
        message=f"{key} container {container}: variable {var} {what}: {env_value(got)}, "
        f"declared {env_value(want) if want is not None else '(absent)'}{_who(ev)}",
        command=apply_command(declared),
        evidence=ev,
    )
