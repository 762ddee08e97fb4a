"""An HPA written as `autoscaling/v1` (`targetCPUUtilizationPercentage`) against the v2 shape the
API server returns it in: no false finding on a clean cluster, and real drift of its cpu target or
its maxReplicas still found."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube.conftest import write_kubeconfig
from kube.kubeapi import FakeCluster, shop_repo
from nixdrift.kube.scan import KubeOptions, scan
from nixdrift.models import Report, Severity
from nixdrift.sinks.kube import api_client

V2_HPA = """apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 5
"""
V1_HPA = """apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 5
  targetCPUUtilizationPercentage: 60
"""
V1_WORKER = """---
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: worker, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}
  maxReplicas: 3
"""


@pytest.fixture
def manifests(tmp_path: Path, cluster: FakeCluster) -> Path:
    """The shop with its web HPA written as v1 (a cpu target) and a v1 HPA without one, applied."""

    def as_v1(dest: Path) -> None:
        web = dest / "web.yaml"
        assert V2_HPA in web.read_text()
        web.write_text(web.read_text().replace(V2_HPA, V1_HPA))
        (dest / "worker-hpa.yaml").write_text(V1_WORKER)

    return shop_repo(tmp_path, cluster, as_v1)


def check(cluster: FakeCluster, manifests: Path, tmp_path: Path) -> Report:
    api = api_client(str(write_kubeconfig(tmp_path / "kubeconfig", cluster.url)))
    return scan(KubeOptions(manifests=manifests, cluster_name="prod"), api=api)


def test_a_v1_hpa_on_a_clean_cluster_is_no_drift(cluster: FakeCluster, manifests: Path, tmp_path: Path) -> None:
    live = cluster.get("HorizontalPodAutoscaler", "shop", "web")
    assert live["apiVersion"] == "autoscaling/v2" and "targetCPUUtilizationPercentage" not in live["spec"]
    report = check(cluster, manifests, tmp_path)
    assert report.findings == (), [f.id for f in report.findings]
    assert set(report.categories.values()) == {"ok"}


def test_drift_of_a_v1_hpa_is_still_found(cluster: FakeCluster, manifests: Path, tmp_path: Path) -> None:
    metric = ["spec", "metrics"]
    cpu90 = {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 90}},
    }
    cluster.edit("HorizontalPodAutoscaler", "shop", "web", metric, [cpu90])
    cluster.edit("HorizontalPodAutoscaler", "shop", "web", ["spec", "maxReplicas"], 10)
    report = check(cluster, manifests, tmp_path)
    found = {f.id: f for f in report.findings}
    assert set(found) == {
        "kube-resources/shop/HorizontalPodAutoscaler/web/maxReplicas",
        "kube-spec/shop/HorizontalPodAutoscaler/web/spec.metrics",
    }
    up = found["kube-resources/shop/HorizontalPodAutoscaler/web/maxReplicas"]
    assert (up.severity, up.expected, up.actual) == (Severity.MEDIUM, "5", "10")  # DRIFT_UP: cost
    target = found["kube-spec/shop/HorizontalPodAutoscaler/web/spec.metrics"]
    assert '"averageUtilization":60' in target.expected and '"averageUtilization":90' in target.actual
