"""Command line: parse arguments, run one command, map errors to exit codes (here only)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from nixdrift import __version__
from nixdrift.errors import CommandError, NixdriftError

# name -> module with `register(subparsers)`. Only the module of the command being run is
# imported (all of them for `--help`): `check` need not load the daemon, Kubernetes or HTTP code.
# A command module imports only argparse and the light `commands.common` at module level; what
# its `run()` needs (nix, collectors, YAML, git, D-Bus, Kubernetes) it imports there, so that
# building the parser for `--help` stays in the tens of milliseconds.
COMMANDS = {
    name: f"nixdrift.commands.{name}"
    for name in (
        "check",
        "report",
        "snapshot",
        "demo",
        "daemon",
        "history",
        "accept",
        "remediate",
        "fleet",
        "explain",
        "kube",
    )
}


def parser(only: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nixdrift",
        description="Find where a NixOS host has drifted from what its flake declares.",
        epilog="Exit codes: 0 no drift at or above the threshold and every category scanned, 1 drift, "
        "2 error, or nothing found but a category could not be scanned (unavailable).",
    )
    p.add_argument("--version", action="version", version=f"nixdrift {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv: debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        if only in (None, name):
            importlib.import_module(module).register(sub)
    return p


def _command_of(argv: Sequence[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser(_command_of(argv)).parse_args(argv)
    import logging

    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    if os.environ.get("NIXDRIFT_LOG"):
        level = getattr(logging, os.environ["NIXDRIFT_LOG"].upper(), level)
    logging.basicConfig(level=level, format="nixdrift: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except CommandError as exc:
        import shlex

        print(f"nixdrift: error: {exc}", file=sys.stderr)
        print(f"nixdrift: the failing command was: {shlex.join(exc.argv)}", file=sys.stderr)
        return 2
    except NixdriftError as exc:
        print(f"nixdrift: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except Exception as exc:  # an OSError or database error no command anticipated: one line and exit 2
        if not _unanticipated(exc):
            raise
        print(f"nixdrift: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nixdrift: interrupted", file=sys.stderr)
        return 130


def _unanticipated(exc: Exception) -> bool:
    """An OSError, or an sqlite3 error (sqlite3 is looked up, not imported: a command that never
    opened a database cannot raise one, and importing it would slow every start)."""
    sqlite3 = sys.modules.get("sqlite3")
    return isinstance(exc, OSError) or (sqlite3 is not None and isinstance(exc, sqlite3.Error))
