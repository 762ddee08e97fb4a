"""`nixdrift daemon` (not implemented yet)."""

from __future__ import annotations

import argparse

from nixdrift.errors import NixdriftError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("daemon", help="(not implemented yet)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NixdriftError("nixdrift daemon is not implemented yet")
