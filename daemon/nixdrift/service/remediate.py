"""Opt-in remediation: only safe reverts of low-severity findings, each recorded and verified."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nixdrift import pipeline, process
from nixdrift.declared.model import DeclaredState
from nixdrift.errors import NixdriftError
from nixdrift.models import Finding, Severity
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
    """Run the finding's revert command (never through a shell) and record it before and after."""
    if not eligible(f):
        raise NixdriftError(f"{f.id}: not remediated automatically: {why_not(f)}")
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
    sections = pipeline.capture(root, declared, [outcome.finding.category])
    section = sections[outcome.finding.category]
    if section.unavailable is not None:
        ok = False
    else:
        ids = {f.id for f in policy.apply(pipeline.compare(declared, sections))}
        ok = outcome.finding.id not in ids
    store.verified(outcome.seq, ok)
    return Outcome(outcome.finding, outcome.seq, outcome.returncode, outcome.output, ok)
