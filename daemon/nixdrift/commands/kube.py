"""`nixdrift kube`: a cluster's live objects against a directory of manifests, once."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from nixdrift import terminal
from nixdrift.commands.common import add_config, progress, severity_arg

if TYPE_CHECKING:
    from nixdrift.models import Report

FORMATS = ("text", "json", "markdown", "policyreport", "openreports")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "kube",
        help="compare a Kubernetes cluster with a directory of manifests and print the drift",
        description="Read the manifests (rendered with `kubectl kustomize` when the directory is a "
        "kustomization), list the cluster's objects through its API and print every difference in the fields "
        "the manifests set. Exit 0 when nothing is at or above the threshold and every category was read, 1 on "
        "drift, 2 on error or when a category could not be read (like `kubectl diff`).",
    )
    p.add_argument("--manifests", metavar="DIR", help="the manifests in git (default: the config's kube.manifests)")
    p.add_argument("--namespace", "-n", metavar="NS", help="only this namespace (default: all but kube-system & co)")
    p.add_argument(
        "--kubeconfig", metavar="FILE", help="credentials (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    p.add_argument("--cluster", metavar="NAME", help="the cluster's name in reports (default: the API server URL)")
    p.add_argument(
        "--report-namespace",
        metavar="NS",
        help="where PolicyReports/Reports of cluster-wide findings go (default: the config's kubernetes.namespace)",
    )
    add_config(p)
    p.add_argument(
        "--threshold",
        type=severity_arg,
        metavar="SEVERITY",
        help="lowest severity that counts as drift (default: the config's alertThreshold, else medium)",
    )
    p.add_argument("--format", choices=FORMATS, default="text", help="output format")
    p.add_argument("--color", choices=terminal.CHOICES, default="auto", help=terminal.HELP)
    p.add_argument(
        "--remediate",
        action="store_true",
        help="revert low-severity drift by server-side apply of its manifest (dry-run first, re-checked after)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nixdrift import config as config_mod
    from nixdrift.errors import NixdriftError
    from nixdrift.kube.scan import KubeOptions, scan

    cfg = config_mod.load(args.config)
    kcfg = cfg.kube
    manifests = args.manifests or kcfg.manifests
    if not manifests:
        raise NixdriftError("no manifests: pass --manifests DIR (or set kube.manifests in the config)")
    opts = KubeOptions(
        manifests=Path(manifests),
        namespace=args.namespace or kcfg.namespace,
        kubeconfig=args.kubeconfig or kcfg.kubeconfig,
        policy=cfg.policy(args.threshold),
        cluster_name=args.cluster or kcfg.cluster or "",
        secret_max_age_days=kcfg.secret_max_age_days,
    )
    report = scan(opts, progress=progress)
    if args.remediate:
        from nixdrift.kube.remediate import remediate_low
        from nixdrift.sinks.kube import api_client

        outcome = remediate_low(report, opts, api_client(opts.kubeconfig, in_cluster_fallback=True))
        for line in outcome.lines():
            print(f"nixdrift: {line}", file=sys.stderr)
        report = outcome.report
    namespace = args.report_namespace or cfg.kubernetes.namespace
    if args.format in ("policyreport", "openreports"):
        from nixdrift.sinks.openreports import cluster_reports_yaml

        sys.stdout.write(cluster_reports_yaml(report, args.format, default_namespace=namespace))
    else:
        from nixdrift.report import render

        sys.stdout.write(render(report, args.format, color=terminal.use_color(args.color, sys.stdout)))
    return exit_code(report)


def exit_code(report: Report) -> int:
    """Like `kubectl diff` and `check`: 1 drift at or above the threshold; else 2 when a category
    could not be read (named on stderr: "no drift" is not claimed for what was not seen); else 0.
    (Computed here: the host pipeline and its collectors need not load for a cluster.)"""
    missing = sorted(c.value for c, s in report.categories.items() if s.startswith("unavailable"))
    code = 1 if report.at_or_above_threshold() else 2 if missing else 0
    if missing:
        verdict = "no drift found in the rest: exit 2, not clean" if code == 2 else "the drift found may be partial"
        print(f"nixdrift: not read: {', '.join(missing)} (unavailable, see categories); {verdict}", file=sys.stderr)
    return code
