"""OpenReports (`openreports.io/v1alpha1` `Report`), the successor of wgpolicyk8s.io PolicyReports.

The two kinds share their shape (scope, summary, results with policy, rule, result, severity,
message, properties, source, timestamp); a Report adds a top-level `source` and a `category` per
result. So a Report is built from the PolicyReport of the same report (`sinks.kube.policy_report`,
which bounds its size and escapes host text) and converted: one truth, two spellings.

For a cluster (`nixdrift kube`) there is one report per namespace holding that namespace's
findings; cluster-scoped findings (ClusterRoles, the manifests' git state) go to the report
namespace. `reportFormat` (config) picks policyreport, openreports or both, for hosts and clusters.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import yaml

from nixdrift.models import Category, Finding, Report
from nixdrift.sinks.kube import object_name, policy_report

GROUP = "openreports.io"
VERSION = "v1alpha1"
PLURAL = "reports"
SOURCE = "nixdrift"
RESULT_CATEGORY = "configuration drift"
FORMATS = ("policyreport", "openreports", "both")


def from_policy_report(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenReports `Report` carrying the same results as a PolicyReport object."""
    out = copy.deepcopy(dict(obj))
    out["apiVersion"] = f"{GROUP}/{VERSION}"
    out["kind"] = "Report"
    out["source"] = SOURCE
    out["results"] = [{**r, "category": RESULT_CATEGORY} for r in out.get("results") or []]
    return out


def open_report(report: Report, *, namespace: str = "nixdrift", **kwargs: Any) -> dict[str, Any]:
    """A host's report as an OpenReports Report (same name and namespace as its PolicyReport)."""
    return from_policy_report(policy_report(report, namespace=namespace, **kwargs))


def objects(report: Report, fmt: str, *, namespace: str = "nixdrift") -> list[dict[str, Any]]:
    """The objects `reportFormat` asks for, for one host."""
    pr = policy_report(report, namespace=namespace)
    return _spell([pr], fmt)


def _spell(reports: list[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
    match fmt:
        case "policyreport":
            return reports
        case "openreports":
            return [from_policy_report(r) for r in reports]
        case "both":
            return reports + [from_policy_report(r) for r in reports]
        case _:
            raise ValueError(f"unknown report format {fmt!r} (one of: {', '.join(FORMATS)})")


def finding_namespace(f: Finding) -> str | None:
    """The namespace of a cluster finding's object (None: cluster-scoped or about the manifests)."""
    if f.category in (Category.KUBE_MANIFESTS, Category.KUBE_CHECKS):
        return None
    parts = f.id.split("/")
    return parts[1] if len(parts) > 2 and parts[1] != "_cluster" else None


def cluster_objects(report: Report, fmt: str, *, default_namespace: str = "nixdrift") -> list[dict[str, Any]]:
    """One report per namespace with findings (cluster-wide ones in `default_namespace`, which
    always gets one, so a clean cluster still shows it was checked)."""
    by_ns: dict[str, list[Finding]] = {default_namespace: []}
    for f in report.findings:
        by_ns.setdefault(finding_namespace(f) or default_namespace, []).append(f)
    name = object_name("kube-" + report.host)
    out: list[dict[str, Any]] = []
    for ns, findings in sorted(by_ns.items()):
        drifted = {f.category for f in findings if not f.accepted}
        categories = {
            c: ("drift" if c in drifted else "ok") if s in ("ok", "drift") else s for c, s in report.categories.items()
        }
        part = replace(report, findings=tuple(findings), categories=categories)
        obj = policy_report(part, namespace=ns)
        obj["metadata"]["name"] = name
        obj["metadata"]["labels"]["nixdrift/host"] = name
        obj["metadata"]["labels"]["nixdrift/scope"] = "cluster"
        obj["scope"] = {"apiVersion": "v1", "kind": "Namespace", "name": ns}
        out.append(obj)
    return _spell(out, fmt)


def _dump(objs: list[dict[str, Any]]) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return "".join("---\n" + yaml.dump(o, Dumper=dumper, sort_keys=False, allow_unicode=True) for o in objs)


def cluster_reports_yaml(report: Report, fmt: str, *, default_namespace: str = "nixdrift") -> str:
    """`nixdrift kube --format policyreport|openreports`: what `kubectl apply -f -` accepts."""
    spelled = "openreports" if fmt == "openreports" else "policyreport" if fmt == "policyreport" else fmt
    return _dump(cluster_objects(report, spelled, default_namespace=default_namespace))


def host_reports_yaml(report: Report, fmt: str, *, namespace: str = "nixdrift") -> str:
    return _dump(objects(report, fmt, namespace=namespace))
