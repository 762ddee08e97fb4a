"""Pure comparison across objects: objects that exist on one side only and the git state of the
manifests; then `compare_all` runs every comparator (workloads, policies, Secrets) and says, per
category, ok / drift / unavailable."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from nixdrift.kube import compare_policies, compare_workloads
from nixdrift.kube.compare_secrets import secret_hygiene, secret_keys, secret_references
from nixdrift.kube.compare_workloads import apply_command, delete_command
from nixdrift.kube.kinds import KINDS, RBAC_KINDS
from nixdrift.kube.model import Declared, KubeObject, Live, ObjectKey
from nixdrift.kube.rules import kfinding
from nixdrift.models import Category, Finding, Kind

SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


@dataclass(frozen=True, slots=True)
class Scope:
    namespace: str | None = None  # None: every namespace but the system ones
    now: datetime | None = None  # for Secret age; None: age is not judged
    secret_max_age_days: int | None = 90


@dataclass(frozen=True, slots=True)
class Comparison:
    findings: tuple[Finding, ...]
    categories: Mapping[Category, str]
    problems: tuple[str, ...] = ()


def in_scope(key: ObjectKey, scope: Scope) -> bool:
    if not key.namespace:
        return True
    if scope.namespace is not None:
        return key.namespace == scope.namespace
    return key.namespace not in SYSTEM_NAMESPACES


def compare_all(declared: Declared, live: Live, scope: Scope) -> Comparison:
    problems = [f"not compared (kind not checked by nixdrift): {s}" for s in declared.skipped]
    wanted = {k: o for k, o in declared.objects.items() if in_scope(k, scope)}
    problems += [f"out of scope (--namespace {scope.namespace}): {k}" for k in declared.objects if k not in wanted]
    listed = {k: o for k, o in live.objects.items() if in_scope(k, scope)}
    unavailable_kinds = set(live.unavailable)
    if live.listed is not None:  # a scheduled check of some categories listed only the kinds they need
        unavailable_kinds |= {k.kind for k in KINDS if k.kind not in live.listed}
    autoscaled = _autoscaled(list(wanted.values()) + list(listed.values()))
    findings: list[Finding] = []
    for key, obj in sorted(wanted.items()):
        if key.kind in unavailable_kinds:
            continue
        other = listed.get(key)
        if other is None:
            findings.append(_missing(obj))
        elif key.kind == "NetworkPolicy":
            findings.extend(compare_policies.network_policy(obj, other))
            findings.extend(_metadata_only(obj, other))
        elif key.kind in RBAC_KINDS:
            findings.extend(compare_policies.rbac(obj, other))
            findings.extend(_metadata_only(obj, other))
        elif key.kind == "Secret":
            findings.extend(secret_keys(obj, other))
            findings.extend(_metadata_only(obj, other))
        else:
            findings.extend(compare_workloads.compare(obj, other, autoscaled=key in autoscaled))
    for key, obj in sorted(listed.items()):
        if key not in wanted and key.kind != "Secret" and _orphan_candidate(obj, scope):
            findings.append(_undeclared(obj))
    if "Secret" not in unavailable_kinds:
        findings.extend(secret_references(listed, wanted, unavailable_kinds))
        findings.extend(secret_hygiene(listed, scope))
    findings.extend(manifests_state(declared))
    return Comparison(
        findings=tuple(findings), categories=_categories(findings, live, declared), problems=tuple(problems)
    )


def _categories(findings: Iterable[Finding], live: Live, declared: Declared) -> dict[Category, str]:
    status: dict[Category, str] = {c: "ok" for c in Category.kube() if c is not Category.KUBE_CHECKS}
    for f in findings:
        status[f.category] = "drift"
    reasons: dict[Category, list[str]] = {}
    for kind in KINDS:
        if kind.kind in live.unavailable:
            for c in kind.categories:
                reasons.setdefault(c, []).append(live.unavailable[kind.kind])
    for c, why in reasons.items():
        status[c] = "unavailable: " + "; ".join(sorted(set(why)))
    if declared.source.git_problem is not None:
        status[Category.KUBE_MANIFESTS] = f"unavailable: {declared.source.git_problem}"
    return status


def _autoscaled(objects: Iterable[KubeObject]) -> frozenset[ObjectKey]:
    out = set()
    for obj in objects:
        if obj.key.kind == "HorizontalPodAutoscaler":
            ref = obj.spec.get("scaleTargetRef") or {}
            if isinstance(ref, Mapping) and ref.get("kind") and ref.get("name"):
                out.add(ObjectKey(str(ref["kind"]), obj.key.namespace, str(ref["name"])))
    return frozenset(out)


def _metadata_only(declared: KubeObject, live: KubeObject) -> list[Finding]:
    meta = {k: v for k, v in declared.metadata.items() if k in ("labels", "annotations")}
    stub = KubeObject(key=declared.key, body={"metadata": meta}, source=declared.source)
    return compare_workloads.compare(stub, live)


def _missing(obj: KubeObject) -> Finding:
    key = obj.key
    if key.kind == "NetworkPolicy":
        rule, category = "kube-netpol-missing", Category.KUBE_NETWORK_POLICIES
    elif key.kind in RBAC_KINDS:
        rule, category = "kube-rbac-missing", Category.KUBE_RBAC
    else:
        rule, category = "kube-object-missing", Category.KUBE_ORPHANS
    return kfinding(
        rule_name=rule,
        id=f"{category.value}/{key.id_part}/missing",
        category=category,
        subject=str(key),
        kind=Kind.MISSING,
        expected="exists",
        actual="(absent)",
        message=f"{key} is declared in {obj.source} but does not exist in the cluster",
        command=apply_command(obj),
        evidence={"object": str(key), "manifest": obj.source},
    )


def _orphan_candidate(obj: KubeObject, scope: Scope) -> bool:
    meta = obj.metadata
    labels = meta.get("labels") or {}
    if meta.get("ownerReferences"):  # made by a controller from something else
        return False
    key = obj.key
    if not key.namespace:  # cluster-scoped: only when the whole cluster is in scope
        return (
            scope.namespace is None
            and not key.name.startswith("system:")
            and "kubernetes.io/bootstrapping" not in labels
        )
    if key.kind == "ConfigMap" and key.name == "kube-root-ca.crt":
        return False
    return not (key.kind == "Service" and key.namespace == "default" and key.name == "kubernetes")


def _undeclared(obj: KubeObject) -> Finding:
    key = obj.key
    if key.kind == "CronJob":
        rule, category = "kube-cronjob-undeclared", Category.KUBE_CRONJOBS
    elif key.kind == "NetworkPolicy":
        rule, category = "kube-netpol-undeclared", Category.KUBE_NETWORK_POLICIES
    elif key.kind in ("RoleBinding", "ClusterRoleBinding"):
        rule, category = "kube-rbac-undeclared-binding", Category.KUBE_RBAC
    elif key.kind in RBAC_KINDS:
        rule, category = "kube-rbac-undeclared-role", Category.KUBE_RBAC
    else:
        rule, category = "kube-object-undeclared", Category.KUBE_ORPHANS
    from nixdrift.kube.attribution import attribute

    who = attribute(obj.body, ("metadata",))
    ev = {"object": str(key), **(who.evidence() if who else {})}
    by = f" (created by {who.manager} at {who.time})" if who else ""
    return kfinding(
        rule_name=rule,
        id=f"{category.value}/{key.id_part}/undeclared",
        category=category,
        subject=str(key),
        kind=Kind.UNMANAGED,
        expected="(absent)",
        actual="exists",
        message=f"{key} exists in the cluster but no manifest declares it{by}",
        command=delete_command(key),
        evidence=ev,
    )


def manifests_state(declared: Declared) -> list[Finding]:
    src = declared.source
    out = []
    for rule, paths, what in (
        ("kube-manifests-uncommitted", src.modified, "has uncommitted changes"),
        ("kube-manifests-untracked", src.untracked, "is not tracked by git"),
    ):
        for path in paths:
            out.append(
                kfinding(
                    rule_name=rule,
                    id=f"kube-manifests/{path}",
                    category=Category.KUBE_MANIFESTS,
                    subject=path,
                    kind=Kind.CHANGED if rule.endswith("uncommitted") else Kind.UNMANAGED,
                    expected="committed",
                    actual="modified" if rule.endswith("uncommitted") else "untracked",
                    message=f"manifest {path} {what}: the cluster is checked against what nobody reviewed",
                    command=f"git -C {shlex.quote(src.directory)} add -- {shlex.quote(path)} && git commit",
                    evidence={"path": path, "directory": src.directory},
                )
            )
    return out
