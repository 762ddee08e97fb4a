"""Kubernetes PolicyReport sink (placeholder)."""

from __future__ import annotations

from nixdrift.errors import NixdriftError
from nixdrift.models import Report


def policy_report_yaml(report: Report) -> str:
    raise NixdriftError("--format policyreport is not implemented yet")
