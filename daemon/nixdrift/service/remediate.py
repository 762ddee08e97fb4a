"""Opt-in remediation: only safe reverts of low-severity findings, each recorded and verified.

Nothing is run unless the history's report scanned the live root of this very machine
(`refusal`): a state directory copied from another host, or a daemon that read a tree with
`--root`, holds findings about paths that are not this machine's.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nixdrift import pipeline, process, target
from nixdrift.declared.model import DeclaredState
from nixdrift.errors import NixdriftError
from nixdrift.models import Finding, Report, Severity
from nixdrift.policy import Policy
from nixdrift.rootfs import Root
from nixdrift.service.history import Store

log = logging.getLogger(__name__)

Runner = Callable[..., Any]


def eligible(f: Finding) -> bool:
    """The one rule: a safe revert of a LOW finding; nothing above low is changed automatically."""
    return f.severity == Severity.LOW and f.fix.safe and bool(f.fix.command.strip()) and not f.accepted


def why_not(f: Finding) -> str:
    if f.accepted:
        return "accepted"
    if f.severity != Severity.LOW:
        return f"severity {f.severity.label} (only low is remediated automatically)"
    if not f.fix.command.strip():
        return "no revert command"
    if not f.fix.safe:
        return f"revert is not safe{': ' + f.fix.reason if f.fix.reason else ''}"
    return ""


def refusal(store: Store) -> str | None:
    """Why the findings in this history must not be acted on here, or None when they may: the
    report the daemon stored with them must be of this machine's live root (`target.refusal`)."""
    text = store.meta("report")
    if not text:
        return "the history holds no report saying which machine its findings are about"
    try:
        report = Report.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"the history's report cannot be read ({type(exc).__name__}: {exc})"
    return target.refusal(report.scanned, target.here())


def command_argv(command: str) -> list[str]:
    """The argv to run a fix command: its own words when shlex reads it back exactly, else bash
    (a compound `a && b`, or bash's $'...' quoting that compare.common.quote uses for odd bytes).
    Every argument in a fix command was quoted when it was built, so bash adds no expansion."""
    argv = shlex.split(command)
    if "\0" in command:
        raise ValueError("a NUL byte cannot be passed to a command")
    return argv if shlex.join(argv) == command else ["bash", "-c", command]


@dataclass(frozen=True, slots=True)
class Outcome:
    finding: Finding
    seq: int
    returncode: int | None
    output: str
    verified: bool | None = None


def apply(store: Store, f: Finding, run: Runner = process.run) -> Outcome:
    """Run the finding's revert command (never through a shell) and record it before and after.
    Refuses (NixdriftError) when the history is not of this machine's live root."""
    if not eligible(f):
        raise NixdriftError(f"{f.id}: not remediated automatically: {why_not(f)}")
    refused = refusal(store)
    if refused is not None:
        raise NixdriftError(f"{f.id}: not remediated on this machine: {refused}")
    try:
        argv = command_argv(f.fix.command)
    except ValueError as exc:
        seq = store.remediation(f.id, f.fix.command, None, f"cannot parse command: {exc}")
        return Outcome(f, seq, None, str(exc))
    log.warning("remediating %s: %s", f.id, f.fix.command)
    try:
        proc = run(argv, check=False, timeout=120)
        rc, output = int(proc.returncode), (proc.stdout + proc.stderr)
    except NixdriftError as exc:
        rc, output = None, str(exc)
    seq = store.remediation(f.id, f.fix.command, rc, output)
    return Outcome(f, seq, rc, output)


def verify(store: Store, root: Root, declared: DeclaredState, policy: Policy, outcome: Outcome) -> Outcome:
    """Re-capture the finding's category: the revert worked only if the finding is gone."""
    compared = pipeline.compare_sections(declared, pipeline.capture(root, declared, [outcome.finding.category]))
    section = compared.sections[outcome.finding.category]
    if section.unavailable is not None:  # not captured, or its comparator failed: nothing verified
        ok = False
    else:
        ids = {f.id for f in policy.apply(compared.findings)}
        ok = outcome.finding.id not in ids
    store.verified(outcome.seq, ok)
    return Outcome(outcome.finding, outcome.seq, outcome.returncode, outcome.output, ok)
