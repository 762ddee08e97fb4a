"""`nixdrift accept`: accept drift as a baseline; it stays visible but stops alerting."""

from __future__ import annotations

import argparse
import fnmatch
import sys

from nixdrift.commands.history import add_state_dir, open_store
from nixdrift.errors import NixdriftError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "accept",
        help="accept current drift (by id or glob): no more alerts until its value changes",
        description="Record the current actual value of the named findings as accepted. Accepted drift stays "
        "in reports (marked accepted) and alerts again as soon as its actual value changes.",
    )
    add_state_dir(p)
    p.add_argument("ids", nargs="*", metavar="ID", help="finding ids or globs (e.g. 'etc/motd', 'users/*')")
    p.add_argument("--all", action="store_true", help="accept every current finding")
    p.add_argument("--reason", required=True, help="why this drift is accepted (kept in the history)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        raise NixdriftError("name the findings to accept (ID or glob), or pass --all")
    store = open_store(args)
    try:
        active = store.active()
        chosen = [
            f for fid, f in sorted(active.items()) if args.all or any(fnmatch.fnmatchcase(fid, g) for g in args.ids)
        ]
        unmatched = [g for g in args.ids if not any(fnmatch.fnmatchcase(fid, g) for fid in active)]
        for g in unmatched:
            print(f"nixdrift: no current finding matches {g!r}", file=sys.stderr)
        done = store.accept(chosen, args.reason)
        if done:  # the daemon's answer to `check` marks what was accepted before: it no longer holds
            from nixdrift import answer

            answer.note_accepted(answer.daemon_dir(store.path.parent))
        for fid in done:
            print(f"accepted {fid}")
    finally:
        store.close()
    return 1 if unmatched else 0
