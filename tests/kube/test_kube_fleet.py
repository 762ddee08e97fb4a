"""`nixdrift fleet` against a local endpoint serving PolicyReports: stale hosts, shared drift, formats."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nixdrift import cli, fleet
from nixdrift.models import Finding, Report, Severity
from nixdrift.sinks.kube import api_client, policy_report


def now() -> datetime:
    """Read at each use: the suite may run minutes after this module was collected."""
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _publish(api: Any, report: Report, *, namespace: str = "nixdrift", ago: timedelta, heartbeat: int = 600) -> None:
    obj = policy_report(report, namespace=namespace, heartbeat=heartbeat)
    obj["metadata"]["annotations"]["nixdrift/sent-at"] = _iso(now() - ago)
    api.objects[(namespace, obj["metadata"]["name"])] = obj


@pytest.fixture
def fleet_api(fake_api: Any, report_factory: Callable[..., Report], finding_factory: Callable[..., Finding]) -> Any:
    port = finding_factory("firewall/tcp-8080/open", Severity.CRITICAL)
    dns = finding_factory("network/resolv.conf/nameservers", Severity.LOW)
    pkg = finding_factory("packages/root/htop", Severity.HIGH)
    old = _iso(now() - timedelta(hours=5))
    _publish(fake_api, report_factory("web1", [port, dns]), ago=timedelta(minutes=3))
    _publish(fake_api, report_factory("web2", [port, pkg]), ago=timedelta(minutes=12))
    _publish(fake_api, report_factory("db1", [port, dns], generated_at=old), ago=timedelta(hours=5))
    _publish(fake_api, report_factory("lab", [pkg]), namespace="lab", ago=timedelta(seconds=30))
    foreign = policy_report(report_factory("other", [pkg]))
    foreign["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "kyverno"}
    fake_api.objects[("nixdrift", "kyverno-report")] = foreign
    return fake_api


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_fleet_flags_stale_hosts_and_counts_shared_drift(
    fleet_api: Any, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(["fleet", "--kubeconfig", str(kubeconfig), "--format", "json"], capsys)
    assert code == 1  # a stale host (and failing ones)
    view = json.loads(out)
    hosts = {h["host"]: h for h in view["hosts"]}
    assert sorted(hosts) == ["db1", "lab", "web1", "web2"]  # the kyverno report is not ours
    assert view["stale"] == ["db1"]  # silent 5 h with a 10 min heartbeat
    assert not hosts["web2"]["stale"] and 700 <= hosts["web2"]["age_seconds"] <= 800
    assert hosts["web1"]["summary"] == {"fail": 1, "warn": 1, "error": 1, "skip": 0, "pass": 8}
    shared = {s["id"]: (s["count"], s["hosts"]) for s in view["shared_drift"]}
    assert shared["firewall/tcp-8080/open"] == (3, ["db1", "web1", "web2"])
    assert shared["network/resolv.conf/nameservers"] == (2, ["db1", "web1"])
    assert shared["packages/root/htop"] == (2, ["lab", "web2"])
    assert view["shared_drift"][0]["id"] == "firewall/tcp-8080/open"  # most hosts first
    (listing,) = [r for r in fleet_api.requests if r.method == "GET"]
    assert listing.path == "/apis/wgpolicyk8s.io/v1alpha2/policyreports"
    assert listing.query["labelSelector"] == ["app.kubernetes.io/managed-by=nixdrift"]


def test_one_namespace_and_a_longer_heartbeat(
    fleet_api: Any, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fleet", "--kubeconfig", str(kubeconfig), "--namespace", "nixdrift", "--heartbeat", "10800"]
    code, out, _ = _run([*argv, "--format", "json"], capsys)
    view = json.loads(out)
    assert sorted(h["host"] for h in view["hosts"]) == ["db1", "web1", "web2"]
    assert view["stale"] == []  # 5 h < two heartbeats of 3 h
    assert code == 1  # still failing hosts
    get = [r for r in fleet_api.requests if r.method == "GET"][-1]
    assert get.path == "/apis/wgpolicyk8s.io/v1alpha2/namespaces/nixdrift/policyreports"


def test_table_and_markdown_show_the_same_facts(
    fleet_api: Any, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, table, _ = _run(["fleet", "--kubeconfig", str(kubeconfig)], capsys)
    lines = table.splitlines()
    assert lines[0].startswith("4 hosts, 1 stale")
    db1 = next(line for line in lines if line.startswith("db1 "))
    assert "STALE" in db1 and "5h00m" in db1
    assert any(line.split()[:3] == ["3", "critical", "firewall/tcp-8080/open"] for line in lines)
    _, markdown, _ = _run(["fleet", "--kubeconfig", str(kubeconfig), "--format", "markdown"], capsys)
    assert "| db1 | 1 | 1 | 1 | 0 | 8 | 5h00m | STALE |" in markdown
    assert "## Drift shared by several hosts" in markdown


def test_reports_are_read_page_by_page(fleet_api: Any, kubeconfig: Path) -> None:
    api = api_client(str(kubeconfig))
    items = list(fleet.list_policy_reports(api, None, page=2))
    assert len(items) == 4
    gets = [r for r in fleet_api.requests if r.method == "GET"]
    assert len(gets) == 2 and gets[1].query["continue"] == ["2"]


def test_an_unreachable_api_server_is_an_error(
    fake_api: Any, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api.stop()
    code, out, err = _run(["fleet", "--kubeconfig", str(kubeconfig), "--timeout", "2"], capsys)
    assert code == 2 and out == ""
    assert "cannot list PolicyReports in all namespaces" in err


def test_a_host_that_never_reported_a_time_is_stale() -> None:
    view = fleet.aggregate([{"metadata": {"name": "ghost", "namespace": "n"}, "results": []}], now(), 600)
    assert [h.host for h in view.stale] == ["ghost"]
    assert fleet.age_text(view.hosts[0].age) == "never"
