"""`nixdrift fleet`: every host's last report, stale hosts, and drift shared by several hosts."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from nixdrift.commands.common import add_config
from nixdrift.errors import NixdriftError

# fleet.FORMATS, repeated so that --help need not import the Kubernetes client (a test keeps them equal)
FORMATS = ("table", "json", "markdown")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds >= 1, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fleet",
        help="show every host's PolicyReport from Kubernetes: summary, age, shared drift",
        description="Read every nixdrift PolicyReport (label app.kubernetes.io/managed-by=nixdrift) and "
        "show per host its summary and the age of its last report (a host silent for more than two "
        "heartbeats is stale), then the findings shared by several hosts. Exit 1 when a host is stale "
        "or failing, 0 otherwise, 2 on error.",
    )
    p.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig to read with (default: the config's kubernetes.kubeconfig, else $KUBECONFIG or "
        "~/.kube/config, else the in-cluster service account)",
    )
    p.add_argument("--namespace", metavar="NS", help="only this namespace (default: all namespaces)")
    p.add_argument(
        "--heartbeat",
        type=_positive,
        metavar="SECONDS",
        help="expected seconds between reports (default: each host's own, as it published it)",
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")
    p.add_argument("--min-hosts", type=_positive, default=2, help="shared drift: on at least this many hosts")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each API request")
    add_config(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nixdrift import config as config_mod
    from nixdrift import fleet
    from nixdrift.sinks.kube import api_client, describe

    cfg = config_mod.load(args.config)
    kubeconfig = args.kubeconfig or cfg.kubernetes.kubeconfig
    api = api_client(kubeconfig, in_cluster_fallback=True)
    where = f"namespace {args.namespace}" if args.namespace else "all namespaces"
    try:
        reports = list(fleet.list_policy_reports(api, args.namespace, timeout=args.timeout))
    except NixdriftError:
        raise
    except Exception as exc:  # noqa: BLE001 - the client raises urllib3 and API errors alike
        raise NixdriftError(f"cannot list PolicyReports in {where}: {describe(exc)}") from None
    view = fleet.aggregate(reports, datetime.now(UTC), args.heartbeat, min_hosts=args.min_hosts)
    sys.stdout.write(fleet.render(view, args.format))
    failing = any(h.summary.get("fail", 0) for h in view.hosts)
    return 1 if view.stale or failing else 0
