"""Command line: parse arguments, run one command, map errors to exit codes (here only)."""

from __future__ import annotations

import os
import sys

from nixdrift import __version__

TYPE_CHECKING = False  # not typing's: `check` answered by `nixdrift.quick` imports neither it nor argparse
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

# name -> (module with `register(subparsers)`, the one-line help `nixdrift --help` shows). Only the
# module of the command being run is imported, and none for `nixdrift --help` (which shows the lines
# below; a test keeps them equal to what each module registers): `check` need not load the daemon,
# Kubernetes or HTTP code. A command module imports only argparse and the light `commands.common` at
# module level; what its `run()` needs (nix, collectors, YAML, git, D-Bus, Kubernetes) it imports
# there, so that building the parser for `nixdrift COMMAND --help` stays in the tens of milliseconds.
SUMMARIES = {
    "check": "compare the flake's declaration with the live host and print the drift",
    "report": "write drift-report.md/.json, remediation-script.sh, drift-metrics.json and nixdrift.prom",
    "snapshot": "capture the live host (files and non-file sources) into a directory",
    "demo": "build a demo NixOS host with planted drift and show nixdrift's report (needs nix)",
    "daemon": "run as a service: scan at start, watch for changes, alert through journald",
    "history": "recent drift events recorded by the daemon (new, resolved, escalated, accepted, events lost...)",
    "accept": "accept current drift (by id or glob): no more alerts until its value changes",
    "remediate": "list the drift the daemon would revert by itself (safe reverts of low findings); --apply runs them",
    "fleet": "show every host's PolicyReport from Kubernetes: summary, age, shared drift",
    "explain": "ask an OpenAI-compatible endpoint for the likely cause and fix of each drift group",
    "kube": "compare a Kubernetes cluster with a directory of manifests and print the drift",
}
COMMANDS = {name: f"nixdrift.commands.{name}" for name in SUMMARIES}


def parser(only: str | None = None, *, every: bool = False) -> argparse.ArgumentParser:
    """The parser of `only` (a command name), or of every command: their modules with `every`,
    else one line of help each (enough for `nixdrift --help`, `--version` and a wrong command)."""
    import argparse
    import importlib

    class Parser(argparse.ArgumentParser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("formatter_class", _formatter)
            super().__init__(*args, **kwargs)

    p = Parser(
        prog="nixdrift",
        description="Find where a NixOS host has drifted from what its flake declares.",
        epilog="Exit codes: 0 no drift at or above the threshold and every category scanned, 1 drift, "
        "2 error, or nothing found but a category could not be scanned (unavailable).",
    )
    p.add_argument("--version", action="version", version=f"nixdrift {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv: debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        if every or only == name:
            importlib.import_module(module).register(sub)
        elif only is None:
            sub.add_parser(name, help=SUMMARIES[name])
    return p


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter at the terminal's width, found as `shutil.get_terminal_size` finds it
    without importing shutil (and with it bz2, lzma and zlib: a tenth of `--help`)."""
    import argparse

    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return argparse.HelpFormatter(prog, width=(columns or 80) - 2)


def _command_of(argv: Sequence[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["check"]:  # a published answer to this very check, printed before anything loads
        from nixdrift import quick

        code = quick.main(argv)
        if code is not None:
            return code
    from nixdrift.errors import CommandError, NixdriftError

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
