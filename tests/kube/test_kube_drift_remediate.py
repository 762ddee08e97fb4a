"""`nixdrift kube --remediate`: only low-severity drift is reverted, by server-side apply of its
manifest with nixdrift's own field manager, a dry run first, and the cluster checked again after;
a dry run the API server refuses stops the revert."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kube.conftest import write_kubeconfig
from kube.kubeapi import FakeCluster, running_cluster
from kube.test_kube_drift import by_id, kube, report_of


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    yield from running_cluster(system=False)


APP: list[str | dict[str, Any]] = ["spec", "template", "spec", "containers", {"name": "app"}]


def seed(cluster: FakeCluster) -> None:
    cluster.edit("Deployment", "shop", "worker", ["spec", "replicas"], 3, manager="kubectl")  # low
    cluster.edit("Deployment", "shop", "web", [*APP, "resources", "limits", "memory"], "3Gi")  # medium


def test_low_severity_drift_is_reverted_after_a_dry_run(shop: Path, cluster: FakeCluster, tmp_path: Path) -> None:
    seed(cluster)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
    proc = kube(shop, kubeconfig, "--remediate", "--format", "json", "--threshold", "low")
    found = by_id(report_of(proc))
    assert "kube-spec/shop/Deployment/worker/spec.replicas" not in found  # reverted, and the re-check agrees
    assert found["kube-resources/shop/Deployment/web/app/limits.memory"]["severity"] == "medium"  # left alone
    assert proc.returncode == 1
    patches = cluster.patches()
    assert [(p.path, "dryRun" in p.query) for p in patches] == [
        ("/apis/apps/v1/namespaces/shop/deployments/worker", True),
        ("/apis/apps/v1/namespaces/shop/deployments/worker", False),
    ]
    for p in patches:
        assert p.query["fieldManager"] == ["nixdrift-remediate"]
        assert p.query["force"] == ["true"]
        assert p.headers["content-type"].startswith("application/apply-patch+yaml")
    assert cluster.get("Deployment", "shop", "worker")["spec"]["replicas"] == 1
    assert "reverted kube-spec/shop/Deployment/worker/spec.replicas by server-side apply" in proc.stderr


def test_a_refused_dry_run_reverts_nothing(shop: Path, cluster: FakeCluster, tmp_path: Path) -> None:
    seed(cluster)
    cluster.fail(422, path_part="/deployments/worker")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
    proc = kube(shop, kubeconfig, "--remediate", "--format", "json", "--threshold", "low")
    found = by_id(report_of(proc))
    assert found["kube-spec/shop/Deployment/worker/spec.replicas"]["severity"] == "low"
    assert len(cluster.patches()) == 1  # the dry run only
    assert cluster.get("Deployment", "shop", "worker")["spec"]["replicas"] == 3
    assert "could not revert kube-spec/shop/Deployment/worker/spec.replicas: HTTP 422" in proc.stderr
