"""`nixdrift snapshot`: capture this host for `check --root DIR` on another machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nixdrift.commands.common import add_not_nixos_ok, host_name
from nixdrift.errors import NixdriftError

# what is not a file: the names `nixdrift snapshot` writes into DIR/.nixdrift/ (any one of a group
# will do) and what a check of the snapshot cannot judge without them
NON_FILE_SOURCES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("units.json",), "systemd's unit state: services and service-config"),
    (("listening.json",), "listening sockets: exposure"),
    (("nft.json", "iptables-save.txt"), "the firewall ruleset: firewall"),
)


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
    add_not_nixos_ok(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nixdrift.rootfs import Root
    from nixdrift.snapshot import take

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise NixdriftError(f"{out} is not empty; snapshot into a new directory")
    from nixdrift.nixos_root import require_nixos

    require_nixos(Root(), allowed=args.not_nixos_ok)
    host = args.host or host_name(Root())
    record = take(out, host)
    sources = record["sources"]
    captured = {str(s) for s in sources} if isinstance(sources, list) else set()
    for line in missing_sources(captured):
        print(f"nixdrift: warning: {line}", file=sys.stderr)
    listed = ", ".join(sorted(captured)) or "files only"
    print(f"snapshot of {host} written to {out} (sources: {listed})", file=sys.stderr)
    return 0


def missing_sources(captured: set[str]) -> list[str]:
    """One line for each non-file source the snapshot lacks: a check of it says unavailable there."""
    return [
        f"not captured: {what} (no {' or '.join(names)}); a check of this snapshot says unavailable there"
        for names, what in NON_FILE_SOURCES
        if not captured.intersection(names)
    ]
