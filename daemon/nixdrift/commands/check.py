"""`nixdrift check`: scan once and print the drift."""

from __future__ import annotations

import argparse
import sys

from nixdrift import terminal
from nixdrift.commands.common import add_scan_options, exit_status, load_options, progress

FORMATS = ("text", "json", "markdown", "policyreport")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="compare the flake's declaration with the live host and print the drift",
        description="Evaluate the host's flake, capture the live system and print every difference. "
        "Exit 0 when nothing is at or above the threshold and every category was scanned, 1 on drift, "
        "2 on error or when a category could not be scanned (and no drift was found).",
    )
    add_scan_options(p, formats=FORMATS)
    p.add_argument("--color", choices=terminal.CHOICES, default="auto", help=terminal.HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nixdrift import pipeline
    from nixdrift.report import render

    _cfg, opts = load_options(args)
    report = pipeline.scan(opts, progress)
    color = terminal.use_color(args.color, sys.stdout)
    if args.format == "policyreport":
        from nixdrift.sinks.kube import policy_report_yaml

        sys.stdout.write(policy_report_yaml(report))
    else:
        sys.stdout.write(render(report, args.format, color=color))
    return exit_status(report)
