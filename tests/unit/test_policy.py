"""The policy: default severities by rule, exceptions, severity overrides and the alert threshold."""

from __future__ import annotations

import pytest

from factories import dns_changed as dns
from nixdrift.compare.common import finding
from nixdrift.models import Category, FlakeInfo, Generations, Kind, Report, Severity, sort_findings
from nixdrift.policy import RULES, Policy, rule


def etc_file(path: str, rule_name: str = "etc-changed"):
    return finding(
        rule_name=rule_name,
        id=f"etc/{path}/content",
        category=Category.ETC,
        subject=path,
        kind=Kind.CHANGED,
        expected="sha256:aaaa",
        actual="sha256:bbbb",
        message=f"{path} was edited",
        evidence={"path": path},
    )


def wheel(user: str):
    return finding(
        rule_name="wheel-member",
        id=f"users/{user}/wheel",
        category=Category.USERS,
        subject=user,
        kind=Kind.UNMANAGED,
        expected="not in wheel",
        actual="in wheel",
        message=f"{user} was added to wheel",
    )


def report_with(policy: Policy, *findings) -> Report:
    kept = policy.apply(findings)
    return Report(
        host="web1",
        generated_at="2024-05-01T10:00:00Z",
        flake=FlakeInfo("."),
        generations=Generations(None, None, None),
        categories={},
        findings=sort_findings(kept),
        threshold=policy.threshold,
    )


def test_rules_give_severity_and_impact_to_findings() -> None:
    assert wheel("mallory").severity is Severity.CRITICAL
    assert etc_file("/etc/hosts").severity is Severity.MEDIUM
    assert dns().severity is Severity.LOW
    assert dns().impact == RULES["dns-changed"][1]
    assert dns().evidence["rule"] == "dns-changed"
    with pytest.raises(KeyError):
        rule("no-such-rule")


def test_every_rule_has_an_impact_sentence() -> None:
    for name, (severity, impact) in RULES.items():
        assert isinstance(severity, Severity), name
        assert impact.endswith(".") and len(impact) > 20, name


def test_exception_by_id_glob_drops_the_finding() -> None:
    policy = Policy(exceptions=("users/alice/*",))
    kept = policy.apply([wheel("alice"), wheel("bob")])
    assert [f.id for f in kept] == ["users/bob/wheel"]


def test_exception_by_path_glob_drops_the_finding() -> None:
    policy = Policy(exceptions=("/etc/nginx/*",))
    kept = policy.apply(
        [etc_file("/etc/nginx/nginx.conf"), etc_file("/etc/nginx/sites/a.conf"), etc_file("/etc/hosts")]
    )
    # fnmatch: `*` also crosses `/`, so a directory glob covers the whole tree below it
    assert [f.path for f in kept] == ["/etc/hosts"]


def test_exception_globs_are_case_sensitive_and_anchored() -> None:
    policy = Policy(exceptions=("/etc/Hosts", "hosts"))
    assert policy.apply([etc_file("/etc/hosts")]) != ()


def test_exception_path_glob_does_not_match_findings_without_a_path() -> None:
    policy = Policy(exceptions=("",))
    assert len(policy.apply([dns()])) == 1


def test_severity_override_by_id_glob() -> None:
    policy = Policy(severity_overrides={"network/*": Severity.HIGH, "users/ci-*/wheel": Severity.LOW})
    kept = {f.id: f.severity for f in policy.apply([dns(), wheel("ci-runner"), wheel("mallory")])}
    assert kept == {
        "network/dns/nameservers": Severity.HIGH,
        "users/ci-runner/wheel": Severity.LOW,
        "users/mallory/wheel": Severity.CRITICAL,
    }


def test_first_matching_override_wins() -> None:
    policy = Policy(severity_overrides={"users/*": Severity.INFO, "users/mallory/*": Severity.HIGH})
    assert policy.apply([wheel("mallory")])[0].severity is Severity.INFO


def test_override_keeps_everything_else_of_the_finding() -> None:
    original = dns()
    (changed,) = Policy(severity_overrides={"network/*": Severity.HIGH}).apply([original])
    assert changed.with_(severity=original.severity) == original
    assert changed.impact == original.impact


def test_threshold_counts_active_findings_at_or_above_it() -> None:
    findings = [wheel("mallory"), etc_file("/etc/hosts"), dns()]
    assert len(report_with(Policy(threshold=Severity.LOW), *findings).at_or_above_threshold()) == 3
    assert len(report_with(Policy(threshold=Severity.MEDIUM), *findings).at_or_above_threshold()) == 2
    high = report_with(Policy(threshold=Severity.HIGH), *findings)
    assert [f.id for f in high.at_or_above_threshold()] == ["users/mallory/wheel"]
    assert len(report_with(Policy(threshold=Severity.CRITICAL), dns()).at_or_above_threshold()) == 0


def test_threshold_ignores_accepted_findings_and_sees_overrides() -> None:
    policy = Policy(threshold=Severity.HIGH, severity_overrides={"network/*": Severity.CRITICAL})
    report = report_with(policy, dns(), wheel("mallory").with_(accepted=True))
    assert [f.id for f in report.at_or_above_threshold()] == ["network/dns/nameservers"]


def test_excepted_finding_never_reaches_the_threshold() -> None:
    policy = Policy(threshold=Severity.INFO, exceptions=("users/*",))
    assert report_with(policy, wheel("mallory")).at_or_above_threshold() == ()
