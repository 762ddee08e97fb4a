"""The daemon's cluster checks: per-category intervals (only the kinds a due check needs are
listed), the mutex (a run never overlaps the next), meta-monitoring (a failed or overrunning check
is a finding and a metric) and the thread started from the `kube:` config."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kube.conftest import FakeAPI, wait_for, write_kubeconfig
from kube.kubeapi import FakeCluster
from nixdrift.config import KUBE_DEFAULT_INTERVALS, parse
from nixdrift.kube.scan import KubeOptions, scan
from nixdrift.kube.schedule import KubeScheduler, start_from_config
from nixdrift.models import Category, Report
from nixdrift.sinks.kube import api_client


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def scheduler(cluster: FakeCluster, shop: Path, tmp_path: Path) -> KubeScheduler:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
    return KubeScheduler(
        opts=KubeOptions(manifests=shop, cluster_name="prod"),
        intervals=dict(KUBE_DEFAULT_INTERVALS),
        clock=Clock(),
        api=api_client(str(kubeconfig)),
    )


def listed(cluster: FakeCluster, since: int) -> set[str]:
    return {r.path.rsplit("/", 1)[-1] for r in cluster.requests[since:] if r.method == "GET"}


def test_each_category_runs_on_its_interval_and_lists_only_what_it_needs(
    scheduler: KubeScheduler, cluster: FakeCluster
) -> None:
    clock = scheduler.clock
    assert isinstance(clock, Clock)
    first = scheduler.run_due()
    assert first is not None and first.findings == ()
    assert set(first.categories) == set(Category.kube())  # the full reconciliation covers every category
    assert scheduler.run_due() is None  # nothing due yet
    seen = len(cluster.requests)
    clock.now = 301  # NetworkPolicies, RBAC and Secrets: every 5 minutes
    cluster.delete("NetworkPolicy", "shop", "default-deny")
    cluster.edit("Deployment", "shop", "web", ["spec", "template", "spec", "containers", {"name": "app"},
                                                "resources", "limits", "memory"], "4Gi")  # fmt: skip
    report = scheduler.run_due()
    assert report is not None
    assert "limits" not in json.dumps([f.id for f in report.findings])  # resources are not due before 15 min
    assert [f.id for f in report.findings] == ["kube-network-policies/shop/NetworkPolicy/default-deny/missing"]
    assert "horizontalpodautoscalers" not in listed(cluster, seen)  # only the kinds the due checks need
    seen = len(cluster.requests)
    clock.now = 901  # resources now; the missing policy found at 301 is still reported
    report = scheduler.run_due()
    assert report is not None
    assert {f.id for f in report.findings} == {
        "kube-network-policies/shop/NetworkPolicy/default-deny/missing",
        "kube-resources/shop/Deployment/web/app/limits.memory",
    }
    assert {"configmaps", "services"}.isdisjoint(listed(cluster, seen))  # no due check needs them


def test_a_failing_check_is_a_finding_and_a_metric(scheduler: KubeScheduler, cluster: FakeCluster) -> None:
    assert scheduler.run_due() is not None
    clock = scheduler.clock
    assert isinstance(clock, Clock)
    clock.now = 301
    cluster.fail(403, path_part="/networkpolicies")  # not retried: one answer
    report = scheduler.run_due()
    assert report is not None
    failed = {f.id: f for f in report.findings}["kube-checks/kube-network-policies/failed"]
    assert failed.severity.label == "high"
    assert "403" in failed.message
    assert report.categories[Category.KUBE_NETWORK_POLICIES].startswith("unavailable")
    assert report.categories[Category.KUBE_CHECKS] == "drift"
    metrics = scheduler.metrics_text()
    assert 'nixdrift_kube_check_failures_total{check="kube-network-policies"} 1' in metrics
    assert 'nixdrift_kube_check_failures_total{check="kube-rbac"} 0' in metrics
    clock.now = 602  # it works again: the meta finding goes, the counter stays
    report = scheduler.run_due()
    assert report is not None
    assert not [f for f in report.findings if f.category is Category.KUBE_CHECKS]
    assert 'nixdrift_kube_check_failures_total{check="kube-network-policies"} 1' in scheduler.metrics_text()


def test_an_overrunning_check_is_a_finding_and_a_metric(scheduler: KubeScheduler) -> None:
    clock = scheduler.clock
    assert isinstance(clock, Clock)

    def slow_scan(opts: KubeOptions, **kwargs: Any) -> Report:
        report = scan(opts, **kwargs)
        clock.now += 400  # longer than the 5-minute checks' interval, shorter than the others'
        return report

    scheduler.scan_fn = slow_scan
    report = scheduler.run_due()
    assert report is not None
    overruns = sorted(f.id for f in report.findings if f.id.endswith("/overrun"))
    assert overruns == [
        "kube-checks/kube-network-policies/overrun",
        "kube-checks/kube-rbac/overrun",
        "kube-checks/kube-secrets/overrun",
    ]
    assert 'nixdrift_kube_check_overruns_total{check="kube-rbac"} 1' in scheduler.metrics_text()
    assert 'nixdrift_kube_check_overruns_total{check="full"} 0' in scheduler.metrics_text()


def test_a_run_never_overlaps_the_next(scheduler: KubeScheduler) -> None:
    entered, release = threading.Event(), threading.Event()

    def blocking_scan(opts: KubeOptions, **kwargs: Any) -> Report:
        entered.set()
        release.wait(10)
        return scan(opts, **kwargs)

    scheduler.scan_fn = blocking_scan
    results: list[Report | None] = []
    first = threading.Thread(target=lambda: results.append(scheduler.run_due()))
    first.start()
    assert entered.wait(10)
    assert scheduler.run_due() is None  # the mutex is held: skipped, not queued behind it
    assert scheduler.skipped_overlaps == 1
    release.set()
    first.join(10)
    assert results and results[0] is not None
    assert "nixdrift_kube_check_skipped_overlaps_total 1" in scheduler.metrics_text()


def test_the_daemon_starts_the_checks_from_the_config(cluster: FakeCluster, shop: Path, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
    cluster.delete("ConfigMap", "shop", "web-config")
    cfg = parse(
        f"reportDir: {tmp_path / 'reports'}\n"
        f"kube:\n  enable: true\n  manifests: {shop}\n  kubeconfig: {kubeconfig}\n  cluster: prod\n"
        "  intervals: {kube-rbac: 60}\n"
    )
    assert cfg.kube.intervals["kube-rbac"] == 60 and cfg.kube.intervals["full"] == 21600
    checks = start_from_config(cfg, tmp_path / "state")
    assert checks is not None
    try:
        path = tmp_path / "reports" / "kube" / "drift-report.json"
        wait_for(path.exists, what="the first cluster report")
        report = json.loads(path.read_text())
    finally:
        checks.stop()
    assert report["host"] == "prod"
    assert [f["id"] for f in report["findings"]] == ["kube-orphans/shop/ConfigMap/web-config/missing"]
    prom = (tmp_path / "reports" / "kube" / "nixdrift-kube.prom").read_text()
    assert 'nixdrift_kube_check_runs_total{check="full"} 1' in prom
    assert 'nixdrift_findings{severity="high",category="kube-orphans"} 1' in prom
    assert 'category="etc"' not in prom  # a cluster's metrics list no host category


def test_kube_intervals_reject_unknown_checks() -> None:
    from nixdrift.errors import ConfigError

    with pytest.raises(ConfigError, match=r"kube.intervals.kube-rabc: unknown key.*did you mean 'kube-rbac'"):
        parse("kube:\n  intervals: {kube-rabc: 60}\n")


def test_the_daemon_reverts_low_severity_drift_when_asked(cluster: FakeCluster, shop: Path, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
    cluster.edit("Deployment", "shop", "worker", ["spec", "replicas"], 4, manager="kubectl")
    cluster.edit("CronJob", "shop", "backup", ["spec", "suspend"], True)  # high: never reverted automatically
    cfg = parse(
        f"reportDir: {tmp_path / 'reports'}\n"
        f"kube:\n  enable: true\n  autoRemediate: true\n  manifests: {shop}\n  kubeconfig: {kubeconfig}\n"
    )
    checks = start_from_config(cfg, tmp_path / "state")
    assert checks is not None
    try:
        wait_for(lambda: cluster.get("Deployment", "shop", "worker")["spec"]["replicas"] == 1, what="the revert")
    finally:
        checks.stop()
    assert cluster.get("CronJob", "shop", "backup")["spec"]["suspend"] is True
    assert {p.path.rsplit("/", 1)[-1] for p in cluster.patches()} == {"worker"}


def test_a_host_report_lists_no_cluster_category() -> None:
    from kube.conftest import make_report
    from nixdrift.report.metrics import metrics_json, render_prometheus

    report = make_report("web1")
    assert not any(c.is_kube for c in report.categories)
    assert "kube-" not in render_prometheus(report)
    assert not [c for c in metrics_json(report)["by_category"] if c.startswith("kube-")]


def test_credentials_that_do_not_load_make_every_check_fail_loudly(shop: Path, tmp_path: Path) -> None:
    cfg = parse(
        f"reportDir: {tmp_path / 'reports'}\n"
        f"kube:\n  enable: true\n  manifests: {shop}\n  kubeconfig: {tmp_path / 'missing'}\n"
    )
    checks = start_from_config(cfg, tmp_path / "state")  # the daemon starts anyway: hosts are still watched
    assert checks is not None
    try:
        path = tmp_path / "reports" / "kube" / "drift-report.json"
        wait_for(path.exists, what="the first cluster report")
        report = json.loads(path.read_text())
    finally:
        checks.stop()
    failed = {f["id"]: f for f in report["findings"]}["kube-checks/full/failed"]
    assert failed["severity"] == "high"
    assert "cannot load Kubernetes credentials" in failed["message"]
    assert report["categories"]["kube-checks"] == "drift"
    assert report["categories"]["kube-rbac"].startswith("unavailable: NixdriftError: cannot load")


def test_first_seen_and_count_survive_a_restart(
    cluster: FakeCluster, shop: Path, tmp_path: Path, scheduler: KubeScheduler
) -> None:
    from datetime import UTC, datetime, timedelta

    history = tmp_path / "state" / "kube-history.json"
    scheduler.history_path = history
    cluster.delete("NetworkPolicy", "shop", "default-deny")
    clock = scheduler.clock
    assert isinstance(clock, Clock)
    scheduler.wall = lambda: datetime(2026, 6, 1, tzinfo=UTC) + timedelta(seconds=clock.now)
    first = scheduler.run_due()
    clock.now = 301
    second = scheduler.run_due()
    assert first is not None and second is not None
    (a,), (b,) = first.findings, second.findings
    assert (a.first_seen, b.first_seen, b.last_seen, b.count) == (
        "2026-06-01T00:00:00Z",
        "2026-06-01T00:00:00Z",
        "2026-06-01T00:05:01Z",
        2,
    )
    restarted = KubeScheduler(
        opts=scheduler.opts,
        intervals=scheduler.intervals,
        clock=Clock(),
        wall=lambda: datetime(2026, 6, 2, tzinfo=UTC),
        api=scheduler.api,
        history_path=history,
    )
    third = restarted.run_due()
    assert third is not None
    (c,) = third.findings
    assert (c.first_seen, c.count) == (a.first_seen, 3)


def test_the_daemon_publishes_one_report_per_namespace_to_the_fleet_cluster(
    cluster: FakeCluster, shop: Path, tmp_path: Path, fake_api: FakeAPI
) -> None:
    checked = write_kubeconfig(tmp_path / "checked", cluster.url)
    fleet = write_kubeconfig(tmp_path / "fleet", fake_api.url)
    cluster.delete("NetworkPolicy", "shop", "default-deny")
    cfg = parse(
        f"reportDir: {tmp_path / 'reports'}\nreportFormat: both\n"
        f"kubernetes: {{enable: true, kubeconfig: {fleet}, namespace: fleet}}\n"
        f"kube:\n  enable: true\n  manifests: {shop}\n  kubeconfig: {checked}\n  cluster: prod\n"
    )
    checks = start_from_config(cfg, tmp_path / "state")
    assert checks is not None
    try:
        patches = wait_for(lambda: len(fake_api.patches()) >= 4 and fake_api.patches(), what="four applies")
    finally:
        checks.stop()
    assert sorted(p.path for p in patches) == [
        "/apis/openreports.io/v1alpha1/namespaces/fleet/reports/kube-prod",
        "/apis/openreports.io/v1alpha1/namespaces/shop/reports/kube-prod",
        "/apis/wgpolicyk8s.io/v1alpha2/namespaces/fleet/policyreports/kube-prod",
        "/apis/wgpolicyk8s.io/v1alpha2/namespaces/shop/policyreports/kube-prod",
    ]
    shop_pr = next(p.json() for p in patches if p.path.endswith("shop/policyreports/kube-prod"))
    assert [r["rule"] for r in shop_pr["results"]] == ["kube-network-policies/shop/NetworkPolicy/default-deny/missing"]
    assert not [r for r in cluster.requests if r.method == "PATCH"]  # nothing written to the checked cluster
