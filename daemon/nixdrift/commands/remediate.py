"""`nixdrift remediate`: list (or with --apply run) the safe reverts of low-severity drift."""

from __future__ import annotations

import argparse
import sys

from nixdrift.commands.common import add_scan_options, load_options
from nixdrift.commands.history import open_store
from nixdrift.errors import NixdriftError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "remediate",
        help="list the drift the daemon would revert by itself (safe reverts of low findings); --apply runs them",
        description="Read the current findings from the daemon's history. Only safe reverts of LOW findings are "
        "ever applied; each is recorded and verified by capturing its category again. --apply refuses unless the "
        "daemon's report is of this machine's live root (same host name and machine-id).",
    )
    add_scan_options(p)
    p.add_argument("--state-dir", metavar="DIR", help="the daemon's state directory")
    p.add_argument("--apply", action="store_true", help="run the eligible reverts (default: only list)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nixdrift.pipeline import load_declared
    from nixdrift.service import remediate

    store = open_store(args)
    try:
        # what the operator accepted since the daemon last stored its findings is left alone too
        baselines = {fid: actual for fid, (actual, _reason) in store.accepted().items()}
        active = (f.with_(accepted=baselines.get(f.id) == f.actual) for f in store.active().values())
        findings = sorted(active, key=lambda f: f.id)
        eligible = [f for f in findings if remediate.eligible(f)]
        for f in findings:
            mark = "revert" if f in eligible else "skip  "
            why = f.fix.command if f in eligible else remediate.why_not(f)
            print(f"{mark} {f.severity.label:<8} {f.id}: {why}")
        refused = remediate.refusal(store) if eligible else None
        if not args.apply or not eligible:
            if refused is not None:
                print(f"nixdrift: --apply would refuse here: {refused}", file=sys.stderr)
            return 0
        if refused is not None:  # findings about another machine, or a tree read with --root
            raise NixdriftError(f"refusing --apply: {refused}")
        _cfg, opts = load_options(args)
        if not opts.root.is_live:
            raise NixdriftError("--apply runs the reverts on this machine; it cannot revert a host read with --root")
        declared = load_declared(opts)
        failed = 0
        for f in eligible:
            outcome = remediate.verify(store, opts.root, declared, opts.policy, remediate.apply(store, f))
            store.events(
                [("remediated", f, "", f"{f.fix.command} -> rc {outcome.returncode}, verified {outcome.verified}")]
            )
            status = "fixed" if outcome.verified else "STILL DRIFTING"
            print(f"{status}: {f.id} (exit {outcome.returncode})", file=sys.stderr)
            failed += not outcome.verified
        return 1 if failed else 0
    finally:
        store.close()
