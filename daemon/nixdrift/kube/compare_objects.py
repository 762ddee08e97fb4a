"""Pure comparison across objects: Secrets (key names, references, age, orphans), objects that
exist on one side only, and the git state of the manifests. Then `compare_all` runs every
comparator and says, per category, ok / drift / unavailable."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nixdrift.kube import compare_policies, compare_workloads
from nixdrift.kube.compare_workloads import apply_command
from nixdrift.kube.kinds import KINDS, RBAC_KINDS, WORKLOAD_KINDS
from nixdrift.kube.model import Declared, KubeObject, Live, ObjectKey
from nixdrift.kube.rules import kfinding
from nixdrift.models import Category, Finding, Kind

SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
SYSTEM_SECRET_TYPES = frozenset(
    {"kubernetes.io/service-account-token", "helm.sh/release.v1", "kubernetes.io/tls", "bootstrap.kubernetes.io/token"}
)


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


def _delete_command(key: ObjectKey) -> str:
    ns = f" -n {shlex.quote(key.namespace)}" if key.namespace else ""
    return f"kubectl delete {key.kind.lower()} {shlex.quote(key.name)}{ns}"


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
        command=_delete_command(key),
        evidence=ev,
    )


def _keys(obj: KubeObject) -> set[str]:
    out: set[str] = set()
    for field in ("data", "stringData", "binaryData"):
        values = obj.body.get(field)
        if isinstance(values, Mapping):
            out.update(str(k) for k in values)
    return out


def secret_keys(declared: KubeObject, live: KubeObject) -> list[Finding]:
    """Key names only: a Secret's values are never compared, shown or sent."""
    key = declared.key
    want, got = _keys(declared), _keys(live)
    out = []
    for rule, names, what in (
        ("kube-secret-keys-missing", sorted(want - got), "lacks"),
        ("kube-secret-keys-extra", sorted(got - want), "holds undeclared"),
    ):
        if names:
            out.append(
                kfinding(
                    rule_name=rule,
                    id=f"kube-secrets/{key.id_part}/{rule.rsplit('-', 1)[-1]}-keys",
                    category=Category.KUBE_SECRETS,
                    subject=f"{key} keys",
                    kind=Kind.MISSING if rule.endswith("missing") else Kind.UNMANAGED,
                    expected=",".join(sorted(want)),
                    actual=",".join(sorted(got)),
                    message=f"{key} {what} key(s): {', '.join(names)}",
                    command=apply_command(declared),
                    evidence={"object": str(key), "manifest": declared.source},
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class SecretRef:
    namespace: str
    name: str
    key: str | None  # None: the whole Secret (envFrom, a volume, an image pull secret)
    optional: bool
    by: ObjectKey
    where: str


def references(obj: KubeObject) -> Iterator[SecretRef]:
    """Every Secret a workload's pod template refers to."""
    if obj.key.kind not in WORKLOAD_KINDS:
        return
    spec = obj.spec
    if obj.key.kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec") or {}) if isinstance(spec, Mapping) else {}
    pod = ((spec.get("template") or {}).get("spec") or {}) if isinstance(spec, Mapping) else {}
    if not isinstance(pod, Mapping):
        return
    ns = obj.key.namespace

    def ref(name: Any, key: Any, optional: Any, where: str) -> SecretRef | None:
        if not isinstance(name, str) or not name:
            return None
        return SecretRef(ns, name, key if isinstance(key, str) else None, optional is True, obj.key, where)

    found: list[SecretRef | None] = []
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for c in pod.get(group) or []:
            if not isinstance(c, Mapping):
                continue
            cname = c.get("name")
            for var in c.get("env") or []:
                src = (var.get("valueFrom") or {}).get("secretKeyRef") if isinstance(var, Mapping) else None
                if isinstance(src, Mapping):
                    found.append(
                        ref(src.get("name"), src.get("key"), src.get("optional"), f"{cname} env {var.get('name')}")
                    )
            for env_from in c.get("envFrom") or []:
                src = env_from.get("secretRef") if isinstance(env_from, Mapping) else None
                if isinstance(src, Mapping):
                    found.append(ref(src.get("name"), None, src.get("optional"), f"{cname} envFrom"))
    for vol in pod.get("volumes") or []:
        if not isinstance(vol, Mapping):
            continue
        src = vol.get("secret")
        if isinstance(src, Mapping):
            found.append(ref(src.get("secretName"), None, src.get("optional"), f"volume {vol.get('name')}"))
        for proj in (vol.get("projected") or {}).get("sources") or []:
            src = proj.get("secret") if isinstance(proj, Mapping) else None
            if isinstance(src, Mapping):
                found.append(ref(src.get("name"), None, src.get("optional"), f"volume {vol.get('name')}"))
    for pull in pod.get("imagePullSecrets") or []:
        if isinstance(pull, Mapping):
            found.append(ref(pull.get("name"), None, False, "imagePullSecrets"))
    yield from (r for r in found if r is not None)


def secret_references(
    live: Mapping[ObjectKey, KubeObject], declared: Mapping[ObjectKey, KubeObject], unavailable: set[str]
) -> list[Finding]:
    """Secrets (or keys) a live or declared pod template needs that do not exist: critical."""
    secrets = {k: o for k, o in live.items() if k.kind == "Secret"}
    refs: dict[tuple[str, str, str | None], SecretRef] = {}
    for obj in list(live.values()) + list(declared.values()):
        if obj.key.kind in unavailable:
            continue
        for r in references(obj):
            refs.setdefault((r.namespace, r.name, r.key), r)
    out = []
    for (ns, name, key), r in sorted(refs.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        if r.optional:
            continue
        secret = secrets.get(ObjectKey("Secret", ns, name))
        if secret is not None and (key is None or key in _keys(secret)):
            continue
        what = f"Secret {ns}/{name}" + (f" key {key}" if key else "")
        gone = "does not exist" if secret is None else "has no such key"
        out.append(
            kfinding(
                rule_name="kube-secret-missing-ref",
                id=f"kube-secrets/{ns}/Secret/{name}/missing-ref" + (f"/{key}" if key else ""),
                category=Category.KUBE_SECRETS,
                subject=what,
                kind=Kind.MISSING,
                expected="exists",
                actual="(absent)",
                message=f"{r.by} ({r.where}) needs {what}, which {gone}: its pods cannot start",
                command=f"kubectl create secret generic {shlex.quote(name)} -n {shlex.quote(ns)} --from-literal=...",
                evidence={"object": str(r.by), "needed_by": r.where},
            )
        )
    return out


def _age_start(obj: KubeObject) -> str:
    """When the Secret's data was last written: the latest managedFields time owning data, else
    its creation."""
    times = [
        str(e.get("time"))
        for e in obj.metadata.get("managedFields") or []
        if isinstance(e, Mapping) and e.get("time") and "f:data" in (e.get("fieldsV1") or {})
    ]
    return max(times, default=str(obj.metadata.get("creationTimestamp") or ""))


def secret_hygiene(live: Mapping[ObjectKey, KubeObject], scope: Scope) -> list[Finding]:
    """Orphan Secrets (no live pod template refers to them) and Secrets older than the rotation policy."""
    used = {(r.namespace, r.name) for obj in live.values() for r in references(obj)}
    out = []
    for key, obj in sorted(live.items()):
        if key.kind != "Secret" or obj.body.get("type") in SYSTEM_SECRET_TYPES or obj.metadata.get("ownerReferences"):
            continue
        if (key.namespace, key.name) not in used:
            out.append(
                kfinding(
                    rule_name="kube-secret-orphan",
                    id=f"kube-secrets/{key.id_part}/orphan",
                    category=Category.KUBE_SECRETS,
                    subject=str(key),
                    kind=Kind.UNMANAGED,
                    expected="referenced by a workload",
                    actual="referenced by nothing",
                    message=f"{key} is referenced by no pod template (Deployment, StatefulSet, DaemonSet, CronJob)",
                    command=_delete_command(key),
                    evidence={"object": str(key)},
                )
            )
        if scope.now is None or not scope.secret_max_age_days:
            continue
        start = _age_start(obj)
        try:
            born = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError:
            continue
        days = (scope.now - (born if born.tzinfo else born.replace(tzinfo=UTC))).days
        if days > scope.secret_max_age_days:
            out.append(
                kfinding(
                    rule_name="kube-secret-age",
                    id=f"kube-secrets/{key.id_part}/age",
                    category=Category.KUBE_SECRETS,
                    subject=str(key),
                    kind=Kind.CHANGED,
                    expected=f"<= {scope.secret_max_age_days} days",
                    actual=f"{days} days",
                    message=f"{key} was last written {start} ({days} days ago); the rotation policy allows "
                    f"{scope.secret_max_age_days}",
                    evidence={"object": str(key), "written_at": start},
                )
            )
    return out


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
