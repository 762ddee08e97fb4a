"""`nixdrift check`: scan once and print the drift.

On the live host, when the daemon's state directory holds a fresh report (every category captured
within --max-age), that report is the answer: the daemon already holds the last full scan and the
realtime updates since. The header says so (its time and age), the drift accepted in its history is
marked accepted as it stands now, and `--fresh`, `--max-age 0` or `--root` scan instead.

A scan with a cache directory is traced (`nixdrift.scanindex`): when it read nothing a stat cannot
vouch for (no process, socket or kernel file: so never on the live host) and every category was
scanned, its answer is published with the inputs it read, and the next check with the same question
prints it while every one of them is unchanged (`nixdrift.quick`). `--no-cache` neither reads nor
writes one; `--fresh` scans and writes a new one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from nixdrift import terminal
from nixdrift.commands.common import Target, add_scan_options, exit_status, load_options, load_target, progress

if TYPE_CHECKING:
    from collections.abc import Callable

    from nixdrift import scanindex
    from nixdrift.models import Report

FORMATS = ("text", "json", "markdown", "policyreport", "openreports")
DEFAULT_MAX_AGE = 3600.0  # as `report`: the daemon's slowest default interval re-captures within it


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="compare the flake's declaration with the live host and print the drift",
        description="Evaluate the host's flake, capture the live system and print every difference. "
        "On the live host with the daemon running, its fresh report is the answer (the header says so); "
        "of a root whose inputs are all as the previous check found them (a disk, a snapshot), that "
        "check's answer is (the header says so too); --fresh scans anyway. "
        "Exit 0 when nothing is at or above the threshold and every category was scanned, 1 on drift, "
        "2 on error or when a category could not be scanned (and no drift was found).",
    )
    add_scan_options(p, formats=FORMATS)
    p.add_argument("--color", choices=terminal.CHOICES, default="auto", help=terminal.HELP)
    p.add_argument(
        "--fresh", action="store_true", help="scan now even when the daemon or the previous check holds an answer"
    )
    p.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE,
        metavar="SECONDS",
        help="answer from the daemon's report when every category in it was captured this recently "
        f"(default: {DEFAULT_MAX_AGE:.0f}; 0: always scan). Never under --root",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="the daemon's state directory (default: the config's stateDir, else /var/lib/nixdrift)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = load_target(args)
    stored = _from_daemon(args, target)
    publish = None
    if stored is None:  # only now the pipeline and its collectors are loaded
        report, publish = _scan(args, target)
        note = ""
    else:
        report, note = stored
    color = terminal.use_color(args.color, sys.stdout)
    if args.format == "policyreport":
        from nixdrift.sinks.kube import policy_report_yaml

        sys.stdout.write(policy_report_yaml(report))
    elif args.format == "openreports":
        from nixdrift.sinks.openreports import host_reports_yaml

        sys.stdout.write(host_reports_yaml(report, "openreports"))
    else:
        from nixdrift.report import render

        text = render(report, args.format, color=color)
        if note and args.format == "text":  # the header's second line; other formats keep their shape
            first, _, rest = text.partition("\n")
            text = f"{first}\n{note}\n{rest}"
        sys.stdout.write(text)
    if note and args.format != "text":
        print(f"nixdrift: {note}", file=sys.stderr)
    code = exit_status(report)
    if publish is not None:  # once the output is out: a person at a terminal does not wait for it
        sys.stdout.flush()
        publish()
    return code


def _scan(args: argparse.Namespace, target: Target) -> tuple[Report, Callable[[], None] | None]:
    """A full scan; with a cache directory, traced, and what publishes its answer for the next check
    with the same question (`nixdrift.scanindex`: printed while nothing the scan read has changed)."""
    from nixdrift import pipeline

    _cfg, opts = load_options(args, target)
    if opts.cache_dir is None:  # --no-cache: no index either
        return pipeline.scan(opts, progress), None
    from nixdrift import scanindex
    from nixdrift.nixos_root import is_nixos

    with scanindex.tracing(ignored=[str(opts.cache_dir)]) as trace:
        nixos = is_nixos(target.root)  # what the question records, an input like any other
        report = pipeline.scan(opts, progress)
    cache = opts.cache_dir
    return report, lambda: _publish(target, cache, report, trace, nixos=nixos)


def _publish(target: Target, cache: Path, report: Report, trace: scanindex.Trace, *, nixos: bool) -> None:
    """The answer of this scan, for the next check; an old one is discarded when this scan is not
    indexable. Never changes the check's result: a failure is a debug line."""
    import logging

    from nixdrift import answer, scanindex
    from nixdrift.flakeref import FlakeRef

    log = logging.getLogger(__name__)
    root = str(target.root.prefix)
    directory = answer.check_dir(cache, root, target.flake, target.host)
    try:
        if target.root.is_live:  # the kernel's host name, D-Bus, /proc: what no stat vouches for
            trace.taint("the live host")
        local = FlakeRef.parse(target.flake).local_source()
        if local is not None and not local.is_absolute():
            trace.depends_on_cwd()  # `--flake .` from another directory is another flake
        if unavailable := sorted(c.value for c, s in report.categories.items() if s.startswith("unavailable")):
            trace.taint(f"categories not scanned: {', '.join(unavailable)}")  # a check that could not look looks again
        manifest = trace.manifest()
        if manifest is None:
            log.debug("the scan is not indexable (%s): no answer kept", "; ".join(trace.taints))
            answer.discard(directory)
            return
        question = answer.question(target.cfg, root, target.flake, target.host, target.policy.threshold, nixos=nixos)
        validity = {"kind": "inputs", "format": scanindex.FORMAT, "scanned_ns": trace.started_ns}
        answer.publish(directory, report, question=question, validity=validity, extra={"inputs": manifest})
    except Exception as exc:  # the answer is an optimisation: the check's own result stands
        log.debug("the check's answer was not published in %s: %s", directory, exc, exc_info=True)


def _from_daemon(args: argparse.Namespace, target: Target) -> tuple[Report, str] | None:
    """The daemon's fresh report of this host and flake, with the accepted baselines and this
    check's threshold, and the header line saying where it came from; None: scan."""
    if args.fresh or args.max_age <= 0 or not target.root.is_live:
        return None
    from dataclasses import replace

    from nixdrift.commands.daemon import DEFAULT_STATE_DIR
    from nixdrift.commands.report import with_accepted
    from nixdrift.service.history import stored_report

    state = Path(args.state_dir or target.cfg.state_dir or DEFAULT_STATE_DIR)
    try:
        found = stored_report(state, args.max_age)
    except OSError as exc:  # a state directory this user may not read (the daemon's is root's): scan
        print(
            f"nixdrift: the daemon's state in {state} cannot be read ({exc.strerror or exc}): scanning", file=sys.stderr
        )
        return None
    if found is None:
        return None
    if (found.host, found.flake.reference) != (target.host, target.flake):
        print(
            f"nixdrift: the daemon's report is of {found.host} from {found.flake.reference}, not of "
            f"{target.host} from {target.flake}: scanning",
            file=sys.stderr,
        )
        return None
    report = replace(with_accepted(found, state), threshold=target.policy.threshold)
    return (
        report,
        f"from the daemon's scan at {found.generated_at} (age {_age(found.generated_at)}; --fresh to scan now)",
    )


def _age(stamp: str) -> str:
    import time
    from datetime import datetime

    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "unknown"
    return f"{max(0, round(time.time() - then))} s"
