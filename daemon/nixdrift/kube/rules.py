"""The default severity and impact of every kind of cluster drift, and the finding constructor.

Severities are overridable by glob on the finding id, like a host's (`severity:` in the config).
"""

from __future__ import annotations

from collections.abc import Mapping

from nixdrift.compare.common import finding
from nixdrift.models import Category, Finding, Kind, Severity

C, H, M, L = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW

# fmt: off
RULES: Mapping[str, tuple[Severity, str]] = {
    "kube-resources-drift-up": (M, "More than declared (DRIFT_UP): the workload costs more and may crowd its neighbours."),  # noqa: E501
    "kube-resources-drift-down": (H, "Less than declared (DRIFT_DOWN): the workload may be OOM-killed, evicted or throttled."),  # noqa: E501
    "kube-hpa-drift-up": (M, "The autoscaler may run more replicas than declared (cost)."),
    "kube-hpa-drift-down": (H, "The autoscaler may not scale out as far as declared (capacity)."),
    "kube-env-security": (H, "A security-relevant variable (key, token, auth, password) differs from the manifest."),
    "kube-env": (M, "The container's environment differs from the manifest."),
    "kube-secret-missing-ref": (C, "A pod template refers to a Secret or key that does not exist: its pods cannot start."),  # noqa: E501
    "kube-secret-keys-missing": (H, "The Secret lacks keys the manifest declares; consumers may fail."),
    "kube-secret-keys-extra": (M, "The Secret holds keys the manifest does not declare."),
    "kube-secret-age": (M, "The Secret is older than the rotation policy allows."),
    "kube-secret-orphan": (L, "No pod template refers to this Secret; it may be a leftover credential."),
    "kube-cronjob-schedule": (M, "The CronJob runs on another schedule than declared."),
    "kube-cronjob-suspend": (H, "The CronJob's suspension differs from the manifest: its jobs do (not) run."),
    "kube-cronjob-image": (H, "The CronJob runs another image than declared."),
    "kube-cronjob-undeclared": (H, "A CronJob runs that no manifest declares."),
    "kube-image": (H, "The workload runs another image than declared."),
    "kube-replicas": (L, "The replica count differs from the manifest."),
    "kube-metadata": (L, "Labels or annotations differ from the manifest."),
    "kube-spec": (M, "A field the manifest sets has another value live."),
    "kube-netpol-missing": (C, "A declared NetworkPolicy does not exist: the traffic it restricts is open."),
    "kube-netpol-rule-added": (H, "A NetworkPolicy allows traffic the manifest does not."),
    "kube-netpol-rule-removed": (C, "A rule of the declared NetworkPolicy is gone or changed; its traffic is no longer as declared."),  # noqa: E501
    "kube-netpol-selector": (M, "The NetworkPolicy selects other pods than declared."),
    "kube-netpol-undeclared": (M, "A NetworkPolicy exists that no manifest declares."),
    "kube-rbac-changed": (C, "Rules, subjects or the role reference differ from the manifest: access is not what was reviewed."),  # noqa: E501
    "kube-rbac-missing": (H, "A declared RBAC object does not exist."),
    "kube-rbac-undeclared-binding": (C, "A binding grants access that no manifest declares."),
    "kube-rbac-undeclared-role": (H, "A role exists that no manifest declares."),
    "kube-object-missing": (H, "A declared object does not exist: the deployment failed or it was deleted."),
    "kube-object-undeclared": (M, "A live object no manifest declares: created by hand, or left over."),
    "kube-manifests-uncommitted": (H, "The cluster is checked against manifests nobody committed."),
    "kube-manifests-untracked": (M, "A manifest in the directory is not tracked by git."),
    "kube-check-failed": (H, "A scheduled cluster check failed: its drift goes unseen until it works again."),
    "kube-check-overrun": (M, "A scheduled cluster check took longer than its interval."),
}
# fmt: on


def kfinding(
    *,
    rule_name: str,
    id: str,
    category: Category,
    subject: str,
    kind: Kind,
    expected: str,
    actual: str,
    message: str,
    command: str = "",
    safe: bool = False,
    evidence: Mapping[str, str] | None = None,
) -> Finding:
    return finding(
        rule_name=rule_name,
        id=id,
        category=category,
        subject=subject,
        kind=kind,
        expected=expected,
        actual=actual,
        message=message,
        command=command,
        safe=safe,
        reason="only low-severity drift is reverted automatically" if command and not safe else "",
        evidence=evidence,
        graded=RULES[rule_name],
    )
