"""One scan: evaluate -> capture -> compare -> policy -> Report. Every command and the daemon use it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nixdrift.categories import TABLE
from nixdrift.declared import evaluate
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Category, Finding, Generations, Report, Section, Severity, sort_findings
from nixdrift.policy import Policy
from nixdrift.rootfs import Root

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ScanOptions:
    flake: str
    host: str
    root: Root = field(default_factory=Root)
    cache_dir: Path | None = None
    policy: Policy = field(default_factory=Policy)


def load_declared(opts: ScanOptions) -> DeclaredState:
    return evaluate(opts.flake, opts.host, opts.cache_dir)


def capture(
    root: Root,
    declared: DeclaredState,
    categories: Iterable[Category] = TABLE,
    progress: Progress | None = None,
) -> dict[Category, Section[Any]]:
    """Capture the live sections for the given categories.

    Collectors shared by several categories run once. A collector that raises does not stop the
    scan: its categories become `unavailable` with the error, so the daemon keeps running.
    """
    done: dict[Any, Section[Any]] = {}
    sections: dict[Category, Section[Any]] = {}
    for category in categories:
        entry = TABLE[category]
        if entry.collector not in done:
            if progress:
                progress(f"capturing {category.value}")
            try:
                done[entry.collector] = entry.collector(root, declared)
            except Exception as exc:
                log.exception("collector for %s failed", category.value)
                done[entry.collector] = Section.missing(category, f"capture failed: {type(exc).__name__}: {exc}")
        sections[category] = done[entry.collector]
    return sections


def compare(declared: DeclaredState, sections: Mapping[Category, Section[Any]]) -> tuple[Finding, ...]:
    findings: list[Finding] = []
    for category, section in sections.items():
        if section.unavailable is not None or section.data is None:
            continue
        try:
            findings.extend(f for f in TABLE[category].comparator(declared, section) if f.category == category)
        except Exception:
            log.exception("comparator for %s failed", category.value)
    return tuple(findings)


def category_status(sections: Mapping[Category, Section[Any]], findings: Iterable[Finding]) -> dict[Category, str]:
    drifted = {f.category for f in findings if not f.accepted}
    status: dict[Category, str] = {}
    for category, section in sections.items():
        if section.unavailable is not None:
            status[category] = f"unavailable: {section.unavailable}"
        else:
            status[category] = "drift" if category in drifted else "ok"
    return status


def generations_of(root: Root, declared: DeclaredState) -> Generations:
    def link(path: str) -> str | None:
        target = root.resolve(path)
        return target if target.startswith("/nix/store/") and root.real(target).exists() else None

    return Generations(
        declared=declared.toplevel,
        current=link("/run/current-system"),
        booted=link("/run/booted-system"),
    )


def build_report(
    declared: DeclaredState,
    root: Root,
    sections: Mapping[Category, Section[Any]],
    findings: Iterable[Finding],
    policy: Policy,
    generated_at: str | None = None,
) -> Report:
    stamp = generated_at or now_iso()
    kept = policy.apply(findings)
    kept = tuple(f.with_(first_seen=f.first_seen or stamp, last_seen=f.last_seen or stamp) for f in kept)
    problems = tuple(
        f"{category.value}: {problem}"
        for category, section in sorted(sections.items(), key=lambda kv: kv[0].value)
        for problem in section.problems
    )
    return Report(
        host=declared.host,
        generated_at=stamp,
        flake=declared.flake,
        generations=generations_of(root, declared),
        categories=category_status(sections, kept),
        findings=sort_findings(kept),
        threshold=policy.threshold,
        problems=problems,
    )


def scan(opts: ScanOptions, progress: Progress | None = None) -> Report:
    """A full scan of every category."""
    if progress:
        progress(f"evaluating {opts.flake}#{opts.host}")
    declared = load_declared(opts)
    sections = capture(opts.root, declared, TABLE, progress)
    findings = compare(declared, sections)
    return build_report(declared, opts.root, sections, findings, opts.policy)


def exit_code(report: Report) -> int:
    """0 when nothing active is at or above the threshold, 1 on drift."""
    return 1 if report.at_or_above_threshold() else 0


__all__ = ["ScanOptions", "Severity", "build_report", "capture", "compare", "exit_code", "scan"]
