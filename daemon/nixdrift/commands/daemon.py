"""`nixdrift daemon`: scan at start, watch, rescan on schedule, alert, remember."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nixdrift.commands.common import add_scan_options, load_options

if TYPE_CHECKING:
    from nixdrift import config as config_mod
    from nixdrift.pipeline import ScanOptions

DEFAULT_STATE_DIR = Path("/var/lib/nixdrift")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "daemon",
        help="run as a service: scan at start, watch for changes, alert through journald",
        description="Scan every category at start, then watch /etc, the unit directories, the nix profiles, "
        "the generation links and the flake for changes and re-capture what they touch; rescan each "
        "category on its interval. systemd Type=notify: READY after the first scan, STATUS, WATCHDOG. "
        "SIGHUP reloads the config and re-evaluates the flake; SIGTERM stops.",
    )
    add_scan_options(p)
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"history database and evaluation cache (default: the config's stateDir, else {DEFAULT_STATE_DIR})",
    )
    p.set_defaults(func=run)


def state_dir(args: argparse.Namespace, cfg: config_mod.Config) -> Path:
    return Path(getattr(args, "state_dir", None) or cfg.state_dir or DEFAULT_STATE_DIR)


def daemon_options(args: argparse.Namespace) -> tuple[config_mod.Config, ScanOptions]:
    """Like check's options, but the evaluation cache lives in the state directory by default."""
    from dataclasses import replace

    cfg, opts = load_options(args)
    if not getattr(args, "no_cache", False) and not getattr(args, "cache_dir", None):
        opts = replace(opts, cache_dir=state_dir(args, cfg) / "eval-cache")
    return cfg, opts


def run(args: argparse.Namespace) -> int:
    from nixdrift.service.loop import Service

    cfg, opts = daemon_options(args)
    service = Service(cfg, opts, state_dir(args, cfg), lambda: daemon_options(args))
    kube_checks = None
    if cfg.kube.enable:  # the cluster's checks run beside the host's, on their own thread and intervals
        from nixdrift.kube.schedule import start_from_config

        kube_checks = start_from_config(
            cfg, state_dir(args, cfg), store=service.store, deliver=service.worker.deliver
        )  # the host's history and alert outbox
    try:
        return service.run()
    finally:
        if kube_checks is not None:
            kube_checks.stop()
