"""`nixdrift report`: write the drift report, JSON, remediation script and metrics to a directory.

With a running daemon (its state directory holds a fresh report: every category captured within
--max-age), the report is read from the daemon's database instead of scanning again. Either way,
the drift accepted in that history (`nixdrift accept`) is marked accepted as it stands now.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from nixdrift.commands.common import add_scan_options, exit_status, load_options, progress

if TYPE_CHECKING:
    import logging

    from nixdrift.models import Report


def _log() -> logging.Logger:
    import logging  # not at module level: building the parser for --help stays light

    return logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="write drift-report.md/.json, remediation-script.sh, drift-metrics.json and nixdrift.prom",
        description="Write the operator's report set into --out: from the daemon's database when it holds a "
        "fresh full scan, else by scanning once.",
    )
    add_scan_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write the reports into")
    p.add_argument("--state-dir", metavar="DIR", help="the daemon's state directory (default: the config's stateDir)")
    p.add_argument(
        "--max-age",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="use the daemon's report when every category was captured this recently (default: 3600; 0: always scan)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nixdrift import pipeline
    from nixdrift.report import write_all

    cfg, opts = load_options(args)
    state = args.state_dir or cfg.state_dir
    report = from_daemon(Path(state), args.max_age) if state and args.max_age > 0 else None
    if report is None:
        report = pipeline.scan(opts, progress)
    if state:  # the daemon's stored report too: it may predate an `accept`
        report = with_accepted(report, Path(state))
    for path in write_all(report, Path(args.out)):
        print(path, file=sys.stderr)
    return exit_status(report)


def from_daemon(state_dir: Path, max_age: float) -> Report | None:
    """The daemon's latest report when every category in it was captured within max_age seconds."""
    from nixdrift.service.history import stored_report

    found = stored_report(state_dir, max_age)
    if found is None:
        _log().info("no fresh daemon report in %s: scanning", state_dir)
    else:
        print(f"nixdrift: using the daemon's report from {found.generated_at} ({state_dir})", file=sys.stderr)
    return found


def with_accepted(report: Report, state_dir: Path) -> Report:
    """The report with what the operator accepted in the daemon's history as it is now (same id and
    actual value), whichever way the report was made: a fresh scan, or the daemon's stored report,
    which may have been written before the last `nixdrift accept`."""
    from nixdrift.errors import NixdriftError
    from nixdrift.service.history import DB_NAME, Store

    if not (state_dir / DB_NAME).exists():
        return report
    try:
        store = Store.open(state_dir, repair=False)
    except NixdriftError as exc:
        _log().warning("accepted baselines not applied: %s", exc)
        return report
    try:
        accepted = store.accepted()
    finally:
        store.close()
    return report.with_baselines({fid: actual for fid, (actual, _reason) in accepted.items()})
