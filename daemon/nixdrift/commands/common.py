"""Options shared by the commands that scan (check, report, daemon, snapshot, demo)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from nixdrift.errors import NixdriftError

if TYPE_CHECKING:  # imported where used: building the parser (--help) loads none of them
    from nixdrift import config as config_mod
    from nixdrift.models import Report, Severity
    from nixdrift.pipeline import ScanOptions
    from nixdrift.policy import Policy
    from nixdrift.rootfs import Root

# config.DEFAULT_PATH, repeated so that --help need not import the YAML loader (a test keeps them equal)
DEFAULT_CONFIG = "/etc/nixdrift/config.yaml"


def severity_arg(text: str) -> Severity:
    from nixdrift.models import Severity

    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"YAML configuration (default: {DEFAULT_CONFIG} when present)",
    )


def add_scan_options(parser: argparse.ArgumentParser, *, formats: tuple[str, ...] = ()) -> None:
    parser.add_argument(
        "--flake",
        metavar="REF",
        help="the host's flake (default: the configured flake, else /etc/nixos)",
    )
    parser.add_argument("--host", metavar="NAME", help="nixosConfigurations entry (default: hostname)")
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="read the host below DIR (a mounted disk, a fixture tree or a `nixdrift snapshot`)",
    )
    add_config(parser)
    parser.add_argument(
        "--threshold",
        type=severity_arg,
        metavar="SEVERITY",
        help="lowest severity that counts as drift: info, low, medium, high, critical "
        "(default: the config's alertThreshold, else medium)",
    )
    parser.add_argument("--no-cache", action="store_true", help="evaluate the flake even if cached")
    parser.add_argument("--cache-dir", metavar="DIR", help="evaluation cache (default: $XDG_CACHE_HOME/nixdrift)")
    add_not_nixos_ok(parser)
    if formats:
        parser.add_argument("--format", choices=formats, default=formats[0], help="output format")


def add_not_nixos_ok(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--not-nixos-ok",
        action="store_true",
        help="go on when the root is not a NixOS system (no /run/current-system, /etc/static, /etc/NIXOS, "
        "system profile or os-release ID=nixos); by default that is an error (exit 2)",
    )


def host_name(root: Root) -> str:
    """The host's name: /etc/hostname below the root, else (live only) the kernel's."""
    import socket

    try:
        name = root.read_text("/etc/hostname").strip()
    except OSError:
        name = ""
    if not name and root.is_live:
        name = socket.gethostname().split(".", 1)[0]
    if not name:
        raise NixdriftError(f"cannot tell the host name below {root.prefix}; pass --host")
    return name


class Target(NamedTuple):
    """What a scan is of, from the arguments and the config; building it loads no collector (a
    check answered from the daemon's state needs no more). A NamedTuple, not a dataclass: the
    dataclasses module (and inspect, ast) would cost `--help` 20 ms."""

    cfg: config_mod.Config
    root: Root
    flake: str
    host: str
    policy: Policy


def load_target(args: argparse.Namespace) -> Target:
    from nixdrift import config as config_mod
    from nixdrift.rootfs import Root

    cfg = config_mod.load(getattr(args, "config", None))
    root = Root.of(getattr(args, "root", None))
    if root.prefix != Path("/") and not root.prefix.is_dir():
        raise NixdriftError(f"--root {root.prefix} is not a directory")
    from nixdrift.nixos_root import require_nixos

    require_nixos(root, allowed=getattr(args, "not_nixos_ok", False))
    flake = args.flake or cfg.flake or "/etc/nixos"
    host = args.host or cfg.host_name or host_name(root)
    return Target(cfg, root, flake, host, cfg.policy(getattr(args, "threshold", None)))


def load_options(args: argparse.Namespace, target: Target | None = None) -> tuple[config_mod.Config, ScanOptions]:
    from nixdrift.declared import default_cache_dir
    from nixdrift.pipeline import ScanOptions

    t = target or load_target(args)
    if getattr(args, "no_cache", False):
        cache: Path | None = None
    elif getattr(args, "cache_dir", None):
        cache = Path(args.cache_dir)
    else:
        cache = default_cache_dir()
    return t.cfg, ScanOptions(flake=t.flake, host=t.host, root=t.root, cache_dir=cache, policy=t.policy)


def exit_status(report: Report) -> int:
    """The scan's exit code, with one line on stderr naming the categories that could not be
    scanned: an output without findings is then not a clean bill (exit 2), and drift found beside
    them may not be all of it."""
    from nixdrift.verdict import exit_code, not_scanned_line  # not the pipeline: a stored report loads no collector

    code = exit_code(report)
    if line := not_scanned_line(report, code):
        print(line, file=sys.stderr)
    return code


def progress(message: str) -> None:
    """Progress on stderr, only for a person watching a terminal."""
    if sys.stderr.isatty() and not os.environ.get("NIXDRIFT_QUIET"):
        print(f"nixdrift: {message}…", file=sys.stderr, flush=True)
