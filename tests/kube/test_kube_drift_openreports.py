"""OpenReports `Report` objects (openreports.io/v1alpha1), for hosts and clusters, validated against
the CRD's schema (tests/kube/data, from deploy/crd/reports.openreports.io.yaml) as strictly as the
API server prunes: a field the schema does not list is an error. PolicyReports beside them are
validated against theirs; `reportFormat` picks one, the other or both, and the sink sends them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube.conftest import DATA, TOP, FakeAPI, _strict, wait_for, write_kubeconfig
from kube.kubeapi import FakeCluster, apply_all, git
from kube.test_kube_drift import kube, seed_drift
from nixdrift.config import KubernetesConfig, parse
from nixdrift.errors import ConfigError
from nixdrift.kube.scan import KubeOptions, scan
from nixdrift.models import Finding, Report, Severity
from nixdrift.sinks.kube import KubeSink, api_client
from nixdrift.sinks.openreports import cluster_objects, objects


@pytest.fixture(scope="module")
def openreports_schema() -> dict[str, Any]:
    strict: dict[str, Any] = _strict(json.loads((DATA / "openreports-v1alpha1.openapi.json").read_text()))
    return strict


@pytest.fixture
def validate_any(crd_schema: dict[str, Any], openreports_schema: dict[str, Any]) -> Callable[[Any], None]:
    """Validate a PolicyReport or a Report against its own CRD (metadata checked as ObjectMeta)."""
    import jsonschema

    report_schema = dict(openreports_schema)
    report_schema["properties"] = {**openreports_schema["properties"], "metadata": crd_schema["properties"]["metadata"]}
    report_schema["required"] = ["apiVersion", "kind", "metadata"]
    validators = {
        ("wgpolicyk8s.io/v1alpha2", "PolicyReport"): jsonschema.Draft7Validator(crd_schema),
        ("openreports.io/v1alpha1", "Report"): jsonschema.Draft7Validator(report_schema),
    }

    def check(obj: Any) -> None:
        validator = validators[(obj["apiVersion"], obj["kind"])]
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])

    return check


def test_the_saved_schema_is_the_deployed_crd() -> None:
    crd = yaml.safe_load((TOP / "deploy/crd/reports.openreports.io.yaml").read_text())
    assert crd["spec"]["group"] == "openreports.io"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["schema"]["openAPIV3Schema"] == json.loads((DATA / "openreports-v1alpha1.openapi.json").read_text())


def test_a_host_report_in_each_format_validates(
    report_factory: Callable[..., Report], finding_factory: Callable[..., Finding], validate_any: Callable[[Any], None]
) -> None:
    report = report_factory(
        "web1",
        [
            finding_factory("firewall/tcp-8080/open", Severity.CRITICAL, path="/etc/x"),
            finding_factory("packages/root/htop", Severity.LOW),
        ],
    )
    both = objects(report, "both")
    assert [(o["apiVersion"], o["kind"]) for o in both] == [
        ("wgpolicyk8s.io/v1alpha2", "PolicyReport"),
        ("openreports.io/v1alpha1", "Report"),
    ]
    for obj in both:
        validate_any(obj)
    pr, rep = both
    assert rep["source"] == "nixdrift"
    assert [r["rule"] for r in rep["results"]] == [r["rule"] for r in pr["results"]]
    assert rep["summary"] == pr["summary"]
    assert [o["kind"] for o in objects(report, "openreports")] == ["Report"]
    assert [o["kind"] for o in objects(report, "policyreport")] == ["PolicyReport"]


@pytest.fixture
def drifted(tmp_path: Path) -> Iterator[Report]:
    cluster = FakeCluster()
    cluster.start()
    try:
        cluster.with_system_objects()
        manifests = tmp_path / "manifests"
        import shutil

        shutil.copytree(DATA / "shop", manifests)
        git(manifests, "init", "-q")
        git(manifests, "add", ".")
        git(manifests, "commit", "-q", "-m", "shop")
        apply_all(cluster, manifests)
        seed_drift(cluster, manifests)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
        opts = KubeOptions(manifests=manifests, kubeconfig=str(kubeconfig), cluster_name="prod-eu")
        yield scan(opts, api=api_client(str(kubeconfig)))
    finally:
        cluster.stop()


def test_a_cluster_gets_one_report_per_namespace_and_each_validates(
    drifted: Report, validate_any: Callable[[Any], None]
) -> None:
    objs = cluster_objects(drifted, "both", default_namespace="nixdrift")
    for obj in objs:
        validate_any(obj)
    reports = {o["metadata"]["namespace"]: o for o in objs if o["kind"] == "Report"}
    assert set(reports) == {"shop", "nixdrift"}
    shop = reports["shop"]
    assert shop["scope"] == {"apiVersion": "v1", "kind": "Namespace", "name": "shop"}
    in_shop = [f for f in drifted.findings if f.id.split("/")[1] == "shop"]
    assert len(shop["results"]) == len(in_shop)
    assert {r["severity"] for r in shop["results"]} >= {"critical", "high", "medium", "low"}
    # the binding to cluster-admin (cluster-scoped) and the uncommitted manifest land in the report namespace
    rules = {r["rule"] for r in reports["nixdrift"]["results"]}
    assert "kube-rbac/_cluster/ClusterRoleBinding/debug-admin/undeclared" in rules
    assert "kube-manifests/worker.yaml" in rules
    assert all(o["metadata"]["labels"]["nixdrift/scope"] == "cluster" for o in objs)


def test_no_secret_value_reaches_a_report(drifted: Report) -> None:
    text = json.dumps(cluster_objects(drifted, "both"))
    for secret_text in ("s3cr3t-t0ken", "c2VjcmV0", "dG9rZW4=", "placeholder-rotated-by-vault"):
        assert secret_text not in text


def test_kube_cli_prints_openreports_that_validate(tmp_path: Path, validate_any: Callable[[Any], None]) -> None:
    cluster = FakeCluster()
    cluster.start()
    try:
        manifests = tmp_path / "m"
        import shutil

        shutil.copytree(DATA / "shop", manifests)
        apply_all(cluster, manifests)
        cluster.delete("NetworkPolicy", "shop", "default-deny")
        proc = kube(manifests, write_kubeconfig(tmp_path / "kc", cluster.url), "--format", "openreports")
    finally:
        cluster.stop()
    assert proc.returncode == 1, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    for doc in docs:
        validate_any(doc)
    results = [r for d in docs for r in d["results"]]
    missing = [r for r in results if r["rule"] == "kube-network-policies/shop/NetworkPolicy/default-deny/missing"]
    assert [(r["severity"], r["result"]) for r in missing] == [("critical", "fail")]
    # not a git repository: the manifests' state is unavailable, counted as an error, never a pass
    assert sum(d["summary"]["error"] for d in docs) >= 1


def test_report_format_is_read_from_the_config() -> None:
    cfg = parse("reportFormat: both\nkubernetes:\n  enable: true\n")
    assert cfg.report_format == "both"
    assert cfg.kubernetes.report_format == "both"
    assert parse("kubernetes: {enable: true}\n").kubernetes.report_format == "policyreport"
    with pytest.raises(ConfigError, match=r"reportFormat.*policyreport, openreports, both"):
        parse("reportFormat: wgpolicy\n")


def test_the_sink_sends_both_kinds_when_asked(
    fake_api: FakeAPI,
    kubeconfig: Path,
    tmp_path: Path,
    report_factory: Callable[..., Report],
    finding_factory: Callable[..., Finding],
    validate_any: Callable[[Any], None],
) -> None:
    cfg = KubernetesConfig(enable=True, kubeconfig=str(kubeconfig), namespace="nixdrift", report_format="both")
    sink = KubeSink(cfg, tmp_path / "state", "9.9.9", request_timeout=2.0, backoff_initial=0.1, backoff_max=0.5)
    try:
        sink.submit(report_factory("web1", [finding_factory("firewall/tcp-8080/open", Severity.CRITICAL)]), True)
        patches = wait_for(lambda: len(fake_api.patches()) >= 2 and fake_api.patches(), what="two applies")
    finally:
        sink.close()
    paths = sorted(p.path for p in patches)
    assert paths == [
        "/apis/openreports.io/v1alpha1/namespaces/nixdrift/reports/web1",
        "/apis/wgpolicyk8s.io/v1alpha2/namespaces/nixdrift/policyreports/web1",
    ]
    for p in patches:
        assert p.query["fieldManager"] == ["nixdrift"]
        validate_any(yaml.safe_load(p.body))


def test_fleet_does_not_count_a_cluster_report_as_a_host(
    drifted: Report, report_factory: Callable[..., Report]
) -> None:
    from datetime import UTC, datetime

    from nixdrift.fleet import aggregate
    from nixdrift.sinks.kube import policy_report

    objs = [*cluster_objects(drifted, "policyreport"), policy_report(report_factory("web1"))]
    view = aggregate(objs, datetime(2024, 5, 1, 12, 5, tzinfo=UTC))
    assert [h.host for h in view.hosts] == ["web1"]
