"""The PolicyReport a host publishes: valid against the CRD, named safely, capped with the worst kept."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixdrift.models import Category, Finding, Fix, Kind, Report, Severity
from nixdrift.sinks.kube import MAX_BYTES, object_name, policy_report, policy_report_yaml, wire_size
from nixdrift.text import display

Validate = Callable[[Any], None]


def test_a_report_becomes_a_valid_policy_report(
    report_factory: Callable[..., Report], finding_factory: Callable[..., Finding], validate: Validate
) -> None:
    report = report_factory(
        "web1",
        [
            finding_factory("firewall/tcp-8080/open", Severity.CRITICAL, expected="closed", actual="open"),
            finding_factory("network/resolv.conf/nameservers", Severity.LOW, path="/etc/resolv.conf"),
            finding_factory("users/alice/groups", Severity.MEDIUM, accepted=True),
        ],
    )
    obj = policy_report(report, namespace="fleet", agent_version="1.2.3", heartbeat=600)
    validate(obj)
    meta = obj["metadata"]
    assert (meta["name"], meta["namespace"]) == ("web1", "fleet")
    assert meta["labels"] == {"app.kubernetes.io/managed-by": "nixdrift", "nixdrift/host": "web1"}
    ann = meta["annotations"]
    assert ann["nixdrift/toplevel"].startswith("/nix/store/")
    assert ann["nixdrift/flake-revision"] == "8f3e2a1b"
    assert ann["nixdrift/scan-time"] == "2024-05-01T12:00:00Z"
    assert ann["nixdrift/agent-version"] == "1.2.3"
    assert ann["nixdrift/truncated"] == "false"
    assert obj["scope"] == {"kind": "Host", "name": "web1"}
    # 11 categories: 3 drifted, repo unavailable, 7 pass; critical fails, low only warns (threshold
    # medium), the accepted finding is skipped
    assert obj["summary"] == {"pass": 7, "fail": 1, "warn": 1, "error": 1, "skip": 1}
    first, second, third = obj["results"]
    assert first == {
        "policy": "firewall",
        "rule": "firewall/tcp-8080/open",
        "result": "fail",
        "severity": "critical",
        "message": "firewall/tcp-8080/open drifted",
        "properties": {"expected": "closed", "actual": "open", "subject": "tcp-8080", "kind": "changed"},
        "source": "nixdrift",
        "timestamp": {"seconds": 1714564800, "nanos": 250000000},
    }
    assert (second["result"], second["severity"], second["properties"]["path"]) == ("warn", "low", "/etc/resolv.conf")
    assert (third["result"], third["rule"]) == ("skip", "users/alice/groups")


def test_every_severity_maps_to_the_crd_enum(
    report_factory: Callable[..., Report], finding_factory: Callable[..., Finding], validate: Validate
) -> None:
    findings = [finding_factory(f"etc/f{s.value}/content", s) for s in Severity]
    obj = policy_report(report_factory("h", findings, threshold=Severity.INFO))
    validate(obj)
    assert sorted(r["severity"] for r in obj["results"]) == sorted(s.label for s in Severity)
    assert {r["result"] for r in obj["results"]} == {"fail"}


def test_a_clean_host_publishes_an_empty_result_list(report_factory: Callable[..., Report], validate: Validate) -> None:
    obj = policy_report(report_factory("clean"))
    validate(obj)
    assert obj["results"] == []
    assert obj["summary"]["fail"] == obj["summary"]["warn"] == 0


def _many(finding_factory: Callable[..., Finding], n: int) -> list[Finding]:
    levels = list(Severity)
    return [
        finding_factory(
            f"etc/file-{i:05d}/content",
            levels[i % len(levels)],
            expected="x" * 300,
            actual="y" * 300,
            message="m" * 2000,
            path=f"/etc/some/long/path/file-{i:05d}",
        )
        for i in range(n)
    ]


def test_a_huge_report_is_capped_at_512_kib_keeping_the_most_severe(
    report_factory: Callable[..., Report], finding_factory: Callable[..., Finding], validate: Validate
) -> None:
    findings = _many(finding_factory, 2000)
    obj = policy_report(report_factory("big", findings))
    validate(obj)
    assert wire_size(obj) <= MAX_BYTES
    assert len(json.dumps(obj).encode()) <= MAX_BYTES
    kept = obj["results"]
    assert 0 < len(kept) < 2000
    ann = obj["metadata"]["annotations"]
    assert ann["nixdrift/truncated"] == "true"
    assert ann["nixdrift/findings"] == "2000"
    assert ann["nixdrift/published-findings"] == str(len(kept))
    # counted before truncation: 400 findings per severity; threshold medium
    assert obj["summary"]["fail"] == 1200 and obj["summary"]["warn"] == 800
    worst_dropped = min(Severity.parse(r["severity"]) for r in kept)
    assert all(Severity.parse(r["severity"]) >= worst_dropped for r in kept)
    assert kept[0]["severity"] == "critical"
    assert {r["severity"] for r in kept} <= {"critical", "high", "medium"}
    # long values are shortened, not dropped
    assert all(len(r["properties"]["expected"]) <= 200 and len(r["message"]) <= 1024 for r in kept)


def test_the_cap_is_tight(report_factory: Callable[..., Report], finding_factory: Callable[..., Finding]) -> None:
    findings = _many(finding_factory, 600)
    full = policy_report(report_factory("big", findings), limit=10**9)
    limit = wire_size(full) - 1
    capped = policy_report(report_factory("big", findings), limit=limit)
    assert len(capped["results"]) == len(full["results"]) - 1


def test_policyreport_yaml_is_one_document_kubectl_can_apply(
    report_factory: Callable[..., Report], finding_factory: Callable[..., Finding], validate: Validate
) -> None:
    report = report_factory("web1", [finding_factory("services/sshd.service/enabled", Severity.HIGH)])
    docs = [d for d in yaml.safe_load_all(policy_report_yaml(report)) if d]
    assert len(docs) == 1
    validate(docs[0])
    assert docs[0]["kind"] == "PolicyReport"


def test_host_names_become_dns_labels_without_collisions() -> None:
    assert object_name("web1") == "web1"
    assert object_name("db-01") == "db-01"
    assert object_name("Web_01").startswith("web-01-")
    assert object_name("web_01") != object_name("web-01")
    assert object_name("web.example.com") != object_name("web-example-com")
    assert len(object_name("x" * 300)) <= 63
    assert object_name("___").startswith("host-")


@settings(max_examples=300)
@given(st.text(min_size=1, max_size=300))
def test_any_host_name_gives_a_valid_object_name(host: str) -> None:
    name = object_name(host)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), name


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(Category)),
            st.sampled_from(list(Severity)),
            st.sampled_from(list(Kind)),
            st.text(max_size=40),
            st.text(max_size=400),
        ),
        max_size=30,
    ),
    st.text(min_size=1, max_size=80),
)
def test_any_report_validates(
    report_factory: Callable[..., Report],
    validate: Validate,
    rows: list[tuple[Category, Severity, Kind, str, str]],
    host: str,
) -> None:
    findings = [
        Finding(
            id=f"{c.value}/{subject}/x",
            category=c,
            subject=subject,
            kind=k,
            expected=text,
            actual=text[::-1],
            message=text,
            fix=Fix(nix="", command="", safe=False),
            severity=s,
            evidence={"path": text},
        )
        for c, s, k, subject, text in rows
    ]
    obj = policy_report(report_factory(host, findings))
    validate(obj)
    assert obj["metadata"]["annotations"]["nixdrift/host"] == display(host)  # control characters escaped
    assert obj["scope"]["name"] == display(host)
