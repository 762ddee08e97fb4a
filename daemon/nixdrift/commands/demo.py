"""`nixdrift demo`: build the bundled demo host with a dozen planted drifts and check it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nixdrift import terminal
from nixdrift.commands.common import severity_arg
from nixdrift.errors import NixdriftError

FORMATS = ("text", "json", "markdown")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="build a demo NixOS host with planted drift and show nixdrift's report (needs nix)",
        description="Build the bundled demo host (a flake and a host tree) in a temporary directory, "
        "plant a dozen imperative changes (a nix-env package, hand-edited /etc files, a new wheel member, "
        "a runtime-enabled unit, an opened port, ...) and run the normal check on it. "
        "Exit 0 when nothing is at or above the threshold, 1 on drift, 2 on error.",
    )
    p.add_argument("--format", choices=FORMATS, default="text", help="output format")
    p.add_argument("--out", metavar="DIR", help="also write the report set (Markdown, JSON, script, metrics)")
    p.add_argument("--keep", metavar="DIR", help="build the demo host in DIR and keep it (default: a removed temp dir)")
    p.add_argument("--threshold", type=severity_arg, metavar="SEVERITY", help="lowest severity that counts")
    p.add_argument(
        "--layout",
        choices=("classic", "perlless", "bashless", "immutable"),
        default="classic",
        help="the NixOS layout of the demo host: classic (setup-etc.pl, update-users-groups.pl), perlless "
        "(/etc overlay, userborn), bashless (and nixos-init), immutable (read-only /etc overlay); "
        "the overlay layouts mount a real overlayfs in a private mount namespace (root only)",
    )
    p.add_argument("--color", choices=terminal.CHOICES, default="auto", help=terminal.HELP)
    p.set_defaults(func=run)


def progress(message: str) -> None:
    print(f"nixdrift demo: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import tempfile
    from contextlib import ExitStack

    from nixdrift import pipeline
    from nixdrift.config import Config
    from nixdrift.demo.activate import overlay_options
    from nixdrift.demo.scenario import DRIFTS, demo_with_layout
    from nixdrift.pipeline import ScanOptions
    from nixdrift.process import which
    from nixdrift.report import render, write_all
    from nixdrift.rootfs import Root

    if which("nix") is None:
        raise NixdriftError("the demo builds a real NixOS closure: nix is not installed or not on PATH")
    with ExitStack() as stack:
        if args.keep:
            base = Path(args.keep).absolute()
            if base.exists() and any(base.iterdir()):
                raise NixdriftError(f"--keep {base}: the directory is not empty")
            base.mkdir(parents=True, exist_ok=True)
        else:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nixdrift-demo-")))
        if args.layout != "classic" and os.geteuid() != 0:
            raise NixdriftError(f"--layout {args.layout} mounts an overlayfs on the demo's /etc: run it as root")
        built, planted = stack.enter_context(demo_with_layout(base, args.layout, progress))
        progress(
            f"planted {planted} of {len(DRIFTS)} drifts; checking {built.name} (flake {built.flake}, root {built.root})"
        )
        opts = ScanOptions(
            flake=str(built.flake),
            host=built.name,
            root=Root.of(built.root),
            cache_dir=base / "cache",
            policy=Config().policy(args.threshold),
        )
        report = pipeline.scan(opts, progress)
        color = terminal.use_color(args.color, sys.stdout)
        sys.stdout.write(render(report, args.format, color=color))
        if args.out:
            for path in write_all(report, Path(args.out)):
                progress(f"wrote {path}")
        if args.keep:
            check = f"nixdrift check --flake {built.flake} --host {built.name} --root {built.root}"
            if built.overlay:  # its /etc is an overlay, mounted only in this process's namespace
                options = overlay_options(built.root, built.overlay_mutable)
                check = f"mount -t overlay overlay -o {options} {built.root}/etc && {check}"
            progress(f"kept the demo host: {check}")
        return pipeline.exit_code(report)
