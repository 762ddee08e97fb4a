"""Opt-in: against a real cluster when NIXDRIFT_TEST_KUBECONFIG names a kubeconfig (`-m kube`).

The cluster needs the PolicyReport CRD (deploy/crd/) and the namespace NIXDRIFT_TEST_NAMESPACE
(default nixdrift); the kubeconfig's user needs get/create/patch/list/delete on policyreports there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from nixdrift import fleet
from nixdrift.models import Finding, Report, Severity
from nixdrift.sinks.kube import GROUP, PLURAL, VERSION, api_client, apply, policy_report

KUBECONFIG = os.environ.get("NIXDRIFT_TEST_KUBECONFIG")
NAMESPACE = os.environ.get("NIXDRIFT_TEST_NAMESPACE", "nixdrift")

pytestmark = [
    pytest.mark.kube,
    pytest.mark.skipif(not KUBECONFIG, reason="set NIXDRIFT_TEST_KUBECONFIG to run against a real cluster"),
]


def test_apply_twice_then_read_back_through_fleet(
    report_factory: Callable[..., Report], finding_factory: Callable[..., Finding]
) -> None:
    from kubernetes import client

    api = api_client(KUBECONFIG)
    host = f"nixdrift-test-{uuid.uuid4().hex[:8]}"
    first = report_factory(host, [finding_factory("firewall/tcp-8080/open", Severity.CRITICAL)])
    second = report_factory(host, [finding_factory("packages/root/htop", Severity.HIGH)])
    custom = client.CustomObjectsApi(api)
    try:
        apply(api, policy_report(first, namespace=NAMESPACE), timeout=20)  # creates
        apply(api, policy_report(second, namespace=NAMESPACE), timeout=20)  # replaces our fields
        stored: Any = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, host)
        assert [r["rule"] for r in stored["results"]] == ["packages/root/htop"]  # the old result is gone
        assert any(
            m["manager"] == "nixdrift" and m["operation"] == "Apply" for m in stored["metadata"]["managedFields"]
        )
        view = fleet.aggregate(fleet.list_policy_reports(api, NAMESPACE), datetime.now(UTC), 3600)
        (ours,) = [h for h in view.hosts if h.host == host]
        assert ours.summary["fail"] == 1 and not ours.stale
    finally:
        custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, host)
