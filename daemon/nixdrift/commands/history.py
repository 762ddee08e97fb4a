"""`nixdrift history`: what the daemon saw and did, from its database."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from nixdrift.commands.common import add_config, severity_arg
from nixdrift.commands.daemon import DEFAULT_STATE_DIR
from nixdrift.errors import NixdriftError

if TYPE_CHECKING:
    from nixdrift.service.history import Store


def add_state_dir(p: argparse.ArgumentParser) -> None:
    add_config(p)
    p.add_argument(
        "--state-dir", metavar="DIR", help=f"the daemon's state directory (default: stateDir, else {DEFAULT_STATE_DIR})"
    )


def open_store(args: argparse.Namespace) -> Store:
    from nixdrift import config as config_mod
    from nixdrift.service.history import DB_NAME, Store

    cfg = config_mod.load(getattr(args, "config", None))
    state = Path(args.state_dir or cfg.state_dir or DEFAULT_STATE_DIR)
    if not (state / DB_NAME).exists():
        raise NixdriftError(f"no history in {state} (is the daemon running with --state-dir {state}?)")
    return Store.open(state, repair=False)


def since_arg(text: str) -> str:
    """An ISO time, or an age such as 30m, 12h, 7d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        when = datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
        return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).isoformat().replace("+00:00", "Z")
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time or an age (30m, 12h, 7d): {text!r}") from None


def category_arg(text: str) -> str:
    from nixdrift.models import Category

    try:
        return Category.parse(text).value
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "history",
        help="recent drift events recorded by the daemon (new, resolved, escalated, accepted, events lost...)",
        description="List the events in the daemon's history database, oldest first.",
    )
    add_state_dir(p)
    p.add_argument("--category", type=category_arg, help="only this category")
    p.add_argument("--id", dest="id_glob", metavar="GLOB", help="only finding ids matching this glob")
    p.add_argument("--severity", type=severity_arg, help="only this severity")
    p.add_argument("--since", type=since_arg, metavar="TIME", help="only since TIME (ISO) or an age (30m, 12h, 7d)")
    p.add_argument("--limit", type=int, default=200, help="at most this many events (the most recent)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nixdrift.report.text import safe_line

    store = open_store(args)
    try:
        rows = store.query_events(
            category=args.category,
            id_glob=args.id_glob,
            severity=args.severity.label if args.severity else None,
            since=args.since,
            limit=args.limit,
        )
    finally:
        store.close()
    if args.format == "json":
        json.dump([r.to_json() for r in rows], sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    for r in rows:
        what = r.finding_id or r.path or ""
        detail = f"  {r.detail}" if r.detail else ""
        line = f"{r.at}  {r.kind:<12} {r.severity or '-':<8} {what}{detail}"
        sys.stdout.write(safe_line(line) + "\n")  # watched paths are host data: no escape reaches the terminal
    if not rows:
        print("nixdrift: no events match", file=sys.stderr)
    return 0
