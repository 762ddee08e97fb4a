"""Opt-in: `nixdrift kube` against a real cluster when NIXDRIFT_TEST_KUBECONFIG names a kubeconfig.

The same manifests as the local API server's tests are applied (server-side) into a fresh namespace
with `kubectl`, nixdrift must find nothing, then drift is made the way people make it (`kubectl
patch`, `kubectl delete`) and must be found with its severity and its manager. The kubeconfig's user
needs to create and delete a namespace and the objects in it (cluster-scoped objects are left out).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kube.conftest import DATA
from kube.test_kube_drift import by_id, kube, report_of

KUBECONFIG = os.environ.get("NIXDRIFT_TEST_KUBECONFIG")

pytestmark = [
    pytest.mark.kube,
    pytest.mark.skipif(not KUBECONFIG, reason="set NIXDRIFT_TEST_KUBECONFIG to run against a real cluster"),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is needed to seed the real cluster"),
]


def kubectl(*args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(KUBECONFIG), *args], input=stdin, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def namespaced(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The shop's namespaced manifests, moved to a fresh namespace and applied."""
    ns = f"nixdrift-test-{uuid.uuid4().hex[:6]}"
    out = tmp_path / "m"
    out.mkdir()
    for path in sorted(DATA.joinpath("shop").glob("*.yaml")):
        docs = []
        for doc in yaml.safe_load_all(path.read_text()):
            items = doc["items"] if doc["kind"] == "List" else [doc]
            for item in items:
                if "namespace" in item["metadata"]:
                    item["metadata"]["namespace"] = ns
                    docs.append(item)
                for subject in item.get("subjects") or []:
                    if "namespace" in subject:
                        subject["namespace"] = ns
        (out / path.name).write_text(yaml.safe_dump_all(docs))
    kubectl("create", "namespace", ns)
    try:
        kubectl("apply", "--server-side", "--field-manager=kubectl-client-side-apply", "-f", str(out))
        yield out, ns
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")


def test_a_real_cluster_clean_then_drifted(namespaced: tuple[Path, str]) -> None:
    manifests, ns = namespaced
    clean = kube(manifests, Path(str(KUBECONFIG)), "--namespace", ns, "--format", "json")
    assert report_of(clean)["findings"] == [], json.dumps(report_of(clean)["findings"], indent=1)
    kubectl("-n", ns, "patch", "hpa", "web", "--type=merge", "-p", '{"spec":{"maxReplicas":9}}')
    kubectl("-n", ns, "patch", "cronjob", "backup", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    kubectl("-n", ns, "delete", "networkpolicy", "default-deny")
    found = by_id(report_of(kube(manifests, Path(str(KUBECONFIG)), "--namespace", ns, "--format", "json")))
    assert found[f"kube-resources/{ns}/HorizontalPodAutoscaler/web/maxReplicas"]["severity"] == "medium"
    suspend = found[f"kube-cronjobs/{ns}/CronJob/backup/suspend"]
    assert (suspend["severity"], suspend["evidence"]["manager"]) == ("high", "kubectl-patch")
    assert found[f"kube-network-policies/{ns}/NetworkPolicy/default-deny/missing"]["severity"] == "critical"
