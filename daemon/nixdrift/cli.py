"""Command line: parse arguments, run one command, map errors to exit codes (here only)."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence

from nixdrift import __version__
from nixdrift.commands import (
    accept,
    check,
    daemon,
    demo,
    explain,
    fleet,
    history,
    remediate,
    report,
    snapshot,
)
from nixdrift.errors import CommandError, NixdriftError

COMMANDS = (check, report, snapshot, demo, daemon, history, accept, remediate, fleet, explain)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nixdrift",
        description="Find where a NixOS host has drifted from what its flake declares.",
        epilog="Exit codes: 0 no drift at or above the threshold, 1 drift, 2 error.",
    )
    p.add_argument("--version", action="version", version=f"nixdrift {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv: debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    if os.environ.get("NIXDRIFT_LOG"):
        level = getattr(logging, os.environ["NIXDRIFT_LOG"].upper(), level)
    logging.basicConfig(level=level, format="nixdrift: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except CommandError as exc:
        print(f"nixdrift: error: {exc}", file=sys.stderr)
        print(f"nixdrift: the failing command was: {shlex.join(exc.argv)}", file=sys.stderr)
        return 2
    except NixdriftError as exc:
        print(f"nixdrift: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nixdrift: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
