"""The kinds `nixdrift kube` compares: where the client lists them and which category owns them."""

from __future__ import annotations

from dataclasses import dataclass

from nixdrift.models import Category


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str
    api_version: str  # as manifests write it
    api_class: str  # kubernetes.client class that lists it
    snake: str  # patch_namespaced_<snake> / patch_<snake> (remediation)
    namespaced: bool
    categories: tuple[Category, ...]  # the categories whose verdict depends on reading this kind

    @property
    def plural(self) -> str:
        return PLURALS.get(self.kind, self.kind.lower() + "s")


PLURALS = {"NetworkPolicy": "networkpolicies", "HorizontalPodAutoscaler": "horizontalpodautoscalers"}
_C = Category
WORKLOAD = (_C.KUBE_RESOURCES, _C.KUBE_ENV, _C.KUBE_SPEC, _C.KUBE_SECRETS, _C.KUBE_ORPHANS)

KINDS: tuple[KindInfo, ...] = (
    KindInfo("Deployment", "apps/v1", "AppsV1Api", "deployment", True, WORKLOAD),
    KindInfo("StatefulSet", "apps/v1", "AppsV1Api", "stateful_set", True, WORKLOAD),
    KindInfo("DaemonSet", "apps/v1", "AppsV1Api", "daemon_set", True, WORKLOAD),
    KindInfo("CronJob", "batch/v1", "BatchV1Api", "cron_job", True, (*WORKLOAD, _C.KUBE_CRONJOBS)),
    KindInfo(
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
        "AutoscalingV2Api",
        "horizontal_pod_autoscaler",
        True,
        (_C.KUBE_RESOURCES, _C.KUBE_SPEC, _C.KUBE_ORPHANS),  # an HPA owns its target's replicas
    ),
    KindInfo("Secret", "v1", "CoreV1Api", "secret", True, (_C.KUBE_SECRETS, _C.KUBE_ORPHANS)),
    KindInfo("ConfigMap", "v1", "CoreV1Api", "config_map", True, (_C.KUBE_SPEC, _C.KUBE_ENV, _C.KUBE_ORPHANS)),
    KindInfo("Service", "v1", "CoreV1Api", "service", True, (_C.KUBE_SPEC, _C.KUBE_ORPHANS)),
    KindInfo(
        "NetworkPolicy",
        "networking.k8s.io/v1",
        "NetworkingV1Api",
        "network_policy",
        True,
        (_C.KUBE_NETWORK_POLICIES,),
    ),
    KindInfo("Role", "rbac.authorization.k8s.io/v1", "RbacAuthorizationV1Api", "role", True, (_C.KUBE_RBAC,)),
    KindInfo(
        "RoleBinding", "rbac.authorization.k8s.io/v1", "RbacAuthorizationV1Api", "role_binding", True, (_C.KUBE_RBAC,)
    ),
    KindInfo(
        "ClusterRole", "rbac.authorization.k8s.io/v1", "RbacAuthorizationV1Api", "cluster_role", False, (_C.KUBE_RBAC,)
    ),
    KindInfo(
        "ClusterRoleBinding",
        "rbac.authorization.k8s.io/v1",
        "RbacAuthorizationV1Api",
        "cluster_role_binding",
        False,
        (_C.KUBE_RBAC,),
    ),
)

BY_KIND = {k.kind: k for k in KINDS}
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "CronJob"})
RBAC_KINDS = frozenset({"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"})


def needed_by(categories: frozenset[Category]) -> tuple[KindInfo, ...]:
    """The kinds a check of these categories must list."""
    return tuple(k for k in KINDS if categories & set(k.categories))


def info(kind: str) -> KindInfo | None:
    return BY_KIND.get(kind)
