"""Pure comparison of Secrets: key names against the manifest (never values), the Secrets and keys
pod templates refer to that do not exist (critical: the pods cannot start), Secrets no template
refers to (orphans) and Secrets older than the rotation policy."""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nixdrift.kube.compare_workloads import apply_command, delete_command
from nixdrift.kube.kinds import WORKLOAD_KINDS
from nixdrift.kube.model import KubeObject, ObjectKey
from nixdrift.kube.rules import kfinding
from nixdrift.models import Category, Finding, Kind

if TYPE_CHECKING:
    from nixdrift.kube.compare_objects import Scope

SYSTEM_SECRET_TYPES = frozenset(
    {"kubernetes.io/service-account-token", "helm.sh/release.v1", "kubernetes.io/tls", "bootstrap.kubernetes.io/token"}
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
                    command=delete_command(key),
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
