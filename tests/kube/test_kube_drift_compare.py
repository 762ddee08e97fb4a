"""The pure comparators on in-memory objects: the cases the seeded cluster does not reach."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import yaml

from kube.kubeapi import server_defaults
from nixdrift.kube.compare_objects import Scope, compare_all
from nixdrift.kube.model import Declared, KubeObject, Live, ManifestSource, ObjectKey
from nixdrift.models import Finding

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def obj(text: str, source: str = "m.yaml") -> KubeObject:
    body = yaml.safe_load(text)
    meta = body["metadata"]
    key = ObjectKey(body["kind"], meta.get("namespace", ""), meta["name"])
    return KubeObject(key=key, body=body, source=source)


def served(o: KubeObject, created: str = "2026-05-30T00:00:00Z") -> KubeObject:
    """The object as the API server returns it: defaults filled in, bookkeeping added."""
    body = copy.deepcopy(dict(o.body))
    server_defaults(body)
    body["metadata"] = {**body["metadata"], "uid": "u", "resourceVersion": "7", "creationTimestamp": created}
    return KubeObject(key=o.key, body=body)


def compare(declared: list[KubeObject], live: list[KubeObject]) -> dict[str, Finding]:
    d = Declared(objects={o.key: o for o in declared}, source=ManifestSource(directory="m", rendered_with="files"))
    lv = Live(objects={o.key: o for o in live})
    return {f.id: f for f in compare_all(d, lv, Scope(namespace="ns", now=NOW)).findings}


def edited(o: KubeObject, change: Any) -> KubeObject:
    body = copy.deepcopy(dict(served(o).body))
    change(body)
    return KubeObject(key=o.key, body=body)


POLICY = obj("""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: ns}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{port: 8443}]
""")


def test_network_policy_selector_change_is_medium_and_a_removed_rule_critical() -> None:
    def retarget(body: dict[str, Any]) -> None:
        body["spec"]["podSelector"] = {"matchLabels": {"app": "api", "tier": "canary"}}
        body["spec"]["ingress"] = []

    found = compare([POLICY], [edited(POLICY, retarget)])
    assert found["kube-network-policies/ns/NetworkPolicy/api/podSelector"].severity.label == "medium"
    removed = [f for f in found.values() if "/ingress/" in f.id]
    assert [(f.severity.label, f.kind.value) for f in removed] == [("critical", "missing")]
    assert compare([POLICY], [served(POLICY)]) == {}  # protocol: TCP and policyTypes are defaults


DEPLOY = obj("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: ns, labels: {team: a}}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      volumes: []
      initContainers:
        - name: init
          image: init:1
          resources: {requests: {memory: 64Mi}}
      containers:
        - name: api
          image: api:1
          env: [{name: MODE, value: prod}]
          resources: {requests: {cpu: 250m}, limits: {cpu: "1"}}
""")


def test_resources_of_init_containers_and_removed_values_have_a_direction() -> None:
    def change(body: dict[str, Any]) -> None:
        pod = body["spec"]["template"]["spec"]
        pod["initContainers"][0]["resources"] = {"requests": {"memory": "32Mi"}}  # down
        pod["containers"][0]["resources"] = {"requests": {"cpu": "250m"}}  # the cpu limit removed: unlimited, up
        pod["containers"][0]["env"] = []  # MODE removed
        body["metadata"]["labels"]["team"] = "b"

    found = compare([DEPLOY], [edited(DEPLOY, change)])
    assert {fid: f.severity.label for fid, f in found.items()} == {
        "kube-resources/ns/Deployment/api/initContainers/init/requests.memory": "high",
        "kube-resources/ns/Deployment/api/api/limits.cpu": "medium",
        "kube-env/ns/Deployment/api/api/MODE": "medium",
        "kube-spec/ns/Deployment/api/metadata.labels.team": "low",
    }
    assert "DRIFT_DOWN" in found["kube-resources/ns/Deployment/api/initContainers/init/requests.memory"].message
    assert found["kube-spec/ns/Deployment/api/metadata.labels.team"].fix.safe  # low: may be reverted automatically


def test_an_hpa_lowered_is_drift_down() -> None:
    hpa = obj("""
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: api, namespace: ns}
spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}, maxReplicas: 10}
""")
    found = compare([hpa], [edited(hpa, lambda b: b["spec"].update(maxReplicas=3))])
    assert found["kube-resources/ns/HorizontalPodAutoscaler/api/maxReplicas"].severity.label == "high"


BINDING = obj("""
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ops, namespace: ns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: ops}
subjects: [{kind: Group, name: ops}]
""")


def test_a_subject_added_to_a_binding_is_critical() -> None:
    def add(body: dict[str, Any]) -> None:
        body["subjects"].append({"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"})

    found = compare([BINDING], [edited(BINDING, add)])
    (added,) = found.values()
    assert (added.severity.label, added.kind.value) == ("critical", "unmanaged")
    assert "mallory" in added.actual
    assert compare([BINDING], [served(BINDING)]) == {}  # the defaulted apiGroup is not drift


SECRET = obj("""
apiVersion: v1
kind: Secret
metadata: {name: tls-client, namespace: ns}
stringData: {cert: x, key: y}
""")


def test_secret_keys_missing_and_an_old_secret() -> None:
    def drop(body: dict[str, Any]) -> None:
        del body["data"]["key"]

    user = obj("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: user, namespace: ns}
spec:
  selector: {matchLabels: {app: u}}
  template:
    metadata: {labels: {app: u}}
    spec:
      containers: [{name: u, image: u:1}]
      volumes: [{name: s, secret: {secretName: tls-client}}]
""")
    old = KubeObject(key=SECRET.key, body={**edited(SECRET, drop).body})
    old_body = copy.deepcopy(dict(old.body))
    old_body["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    found = compare([SECRET, user], [KubeObject(key=SECRET.key, body=old_body), served(user)])
    assert found["kube-secrets/ns/Secret/tls-client/missing-keys"].severity.label == "high"
    age = found["kube-secrets/ns/Secret/tls-client/age"]
    assert (age.severity.label, age.actual) == ("medium", "516 days")
    assert "kube-secrets/ns/Secret/tls-client/orphan" not in found  # the volume refers to it


def test_a_namespace_in_scope_leaves_other_namespaces_and_cluster_orphans_alone() -> None:
    other = obj("""
apiVersion: v1
kind: ConfigMap
metadata: {name: elsewhere, namespace: other}
data: {a: b}
""")
    stray_role = served(
        obj("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: stray}
rules: []
""")
    )
    d = Declared(objects={other.key: other}, source=ManifestSource(directory="m", rendered_with="files"))
    lv = Live(objects={stray_role.key: stray_role})
    result = compare_all(d, lv, Scope(namespace="ns", now=NOW))
    assert result.findings == ()  # neither "missing" (out of scope) nor an undeclared ClusterRole
    assert result.problems == ("out of scope (--namespace ns): ConfigMap/other/elsewhere",)
    everywhere = compare_all(d, lv, Scope(namespace=None, now=NOW))
    assert {f.id for f in everywhere.findings} == {
        "kube-orphans/other/ConfigMap/elsewhere/missing",
        "kube-rbac/_cluster/ClusterRole/stray/undeclared",
    }


def test_ports_and_numbers_written_as_strings_are_not_drift() -> None:
    service = obj("""
apiVersion: v1
kind: Service
metadata: {name: api, namespace: ns}
spec:
  ports: [{name: https, port: 443, targetPort: "8443"}]
  selector: {app: api}
  externalIPs: []
""")
    live = edited(service, lambda b: b["spec"]["ports"][0].update(targetPort=8443))
    assert compare([service], [live]) == {}
    moved = edited(service, lambda b: b["spec"]["ports"][0].update(targetPort=9443))
    (changed,) = compare([service], [moved]).values()
    assert (changed.id, changed.severity.label) == (
        "kube-spec/ns/Service/api/spec.ports[name=https].targetPort",
        "medium",
    )
