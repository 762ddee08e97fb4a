"""`nixdrift report`: write the drift report, JSON, remediation script and metrics to a directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nixdrift import pipeline
from nixdrift.commands.common import add_scan_options, load_options, progress
from nixdrift.report import write_all


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="write drift-report.md/.json, remediation-script.sh, drift-metrics.json and nixdrift.prom",
        description="Scan once and write the operator's report set into --out.",
    )
    add_scan_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write the reports into")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _cfg, opts = load_options(args)
    report = pipeline.scan(opts, progress)
    for path in write_all(report, Path(args.out)):
        print(path, file=sys.stderr)
    return pipeline.exit_code(report)
