"""`nixdrift snapshot`: capture this host for `check --root DIR` on another machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nixdrift.commands.common import host_name
from nixdrift.errors import NixdriftError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "snapshot",
        help="capture the live host (files and non-file sources) into a directory",
        description="Copy the files nixdrift reads under their own paths and capture systemd units, "
        "listening sockets and the firewall ruleset into DIR/.nixdrift/, so that "
        "`nixdrift check --root DIR` works on another machine. Password hashes are redacted.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write (created)")
    p.add_argument("--host", metavar="NAME", help="host name recorded in the snapshot (default: hostname)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nixdrift.rootfs import Root
    from nixdrift.snapshot import take

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise NixdriftError(f"{out} is not empty; snapshot into a new directory")
    host = args.host or host_name(Root())
    record = take(out, host)
    sources = record["sources"]
    listed = ", ".join(str(s) for s in sources) if isinstance(sources, list) and sources else "files only"
    print(f"snapshot of {host} written to {out} (sources: {listed})", file=sys.stderr)
    return 0
