"""`nixdrift explain`: a short likely cause and fix per group of findings, from an LLM (opt-in)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from nixdrift.commands.common import add_scan_options, load_options, progress
from nixdrift.errors import NixdriftError

if TYPE_CHECKING:
    from nixdrift.models import Report


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "explain",
        help="ask an OpenAI-compatible endpoint for the likely cause and fix of each drift group",
        description="Send one report (a drift-report.json, or a scan made now) to the chat endpoint "
        "configured under `explain:` (url, model, keyFile, timeout) and print a short likely cause and "
        "fix per group of findings. Only ids, categories, kinds, severities, subjects, short "
        "expected/actual values and messages are sent, with anything that looks like a secret, a hash "
        "or a key removed; --dry-run prints exactly what would be sent. Off unless configured; exit 2 "
        "when off or when the endpoint fails.",
    )
    p.add_argument(
        "report", nargs="?", metavar="REPORT.json", help="a drift-report.json ('-': stdin); default: scan now"
    )
    add_scan_options(p)
    p.add_argument("--dry-run", action="store_true", help="print the request that would be sent and stop")
    p.set_defaults(func=run)


def _load_report(path: str) -> Report:
    from nixdrift.models import Report

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a drift-report.json object")
        return Report.from_json(data)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise NixdriftError(f"cannot read report {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from nixdrift import config as config_mod
    from nixdrift import explain

    if args.report:  # a report from a file: no scan, so no collector is loaded
        cfg = config_mod.load(args.config)
        report = _load_report(args.report)
    else:
        from nixdrift import pipeline

        cfg, opts = load_options(args)
        if not cfg.explain.url and not args.dry_run:
            raise NixdriftError(_off_message())
        report = pipeline.scan(opts, progress)
    body = explain.payload(report, cfg.explain)
    if args.dry_run:
        sys.stdout.write(json.dumps(body, indent=2, sort_keys=True) + "\n")
        return 0
    if not cfg.explain.url:
        raise NixdriftError(_off_message())
    if not report.active:
        print(f"{report.host}: no drift to explain")
        return 0
    progress(f"asking {cfg.explain.url} ({cfg.explain.model or 'default model'})")
    answer = explain.ask(cfg.explain, body)
    groups = len(explain.groups(report))
    print(f"{report.host}: {len(report.active)} findings in {groups} groups (model {cfg.explain.model or '?'})\n")
    print(answer)
    return 0


def _off_message() -> str:
    return (
        "explain is off: add `explain: {url: https://…/v1, model: NAME, keyFile: /path/to/key}` to the "
        "config (--config) to use an OpenAI-compatible endpoint"
    )
