"""One scan: evaluate -> capture -> compare -> policy -> Report. Every command and the daemon use it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nixdrift import layout
from nixdrift import target as scan_target
from nixdrift.capture import statcache
from nixdrift.categories import TABLE
from nixdrift.declared import evaluate
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Category, Finding, Generations, Report, Section, Severity, sort_findings
from nixdrift.policy import Policy
from nixdrift.rootfs import Root
from nixdrift.verdict import exit_code, unavailable  # re-exported: the verdict lives apart

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
    cache_dir: Path | None = None,
) -> dict[Category, Section[Any]]:
    """Capture the live sections for the given categories.

    Collectors shared by several categories run once. A collector that raises does not stop the
    scan: its categories become `unavailable` with the error, so the daemon keeps running. With a
    `cache_dir`, file digests come from its stat cache where a file's stat is unchanged.
    """
    with statcache.session(cache_dir, root.prefix):
        return _capture(root, declared, categories, progress)


def _capture(
    root: Root, declared: DeclaredState, categories: Iterable[Category], progress: Progress | None
) -> dict[Category, Section[Any]]:
    done: dict[Any, Section[Any]] = {}
    sections: dict[Category, Section[Any]] = {}
    for category in categories:
        entry = TABLE[category]
        if entry.collector not in done:
            if progress:
                progress(f"capturing {category.value}")
            try:
                done[entry.collector] = entry.collector(root, declared)
            except Exception as exc:  # noqa: BLE001 - one broken collector must not void the scan
                reason = f"capture failed: {type(exc).__name__}: {exc}"
                _log_failure(f"{category.value}: {reason}")
                done[entry.collector] = Section.missing(category, reason)
        sections[category] = done[entry.collector]
    return sections


def _log_failure(line: str) -> None:
    """One line for the operator; the traceback only with -vv (it is for whoever fixes the bug)."""
    log.error("%s", line)
    log.debug("%s", line, exc_info=True)


@dataclass(frozen=True, slots=True)
class Compared:
    """What the comparators found, and the sections with every category whose comparator raised
    made `unavailable` (nobody judged it, so no report may call it "ok")."""

    sections: Mapping[Category, Section[Any]]
    findings: tuple[Finding, ...]


def comparator_failed(exc: BaseException) -> str:
    """The problem line of a category whose comparator raised."""
    return f"comparator failed: {type(exc).__name__}: {exc}"


def compare_sections(declared: DeclaredState, sections: Mapping[Category, Section[Any]]) -> Compared:
    """Run each available category's comparator. One that raises does not stop the others: its
    category becomes unavailable, with a problem line saying why."""
    findings: list[Finding] = []
    judged: dict[Category, Section[Any]] = dict(sections)
    for category, section in sections.items():
        if section.unavailable is not None or section.data is None:
            continue
        try:
            found = TABLE[category].comparator(declared, section)
        except Exception as exc:  # noqa: BLE001 - one broken comparator must not void the scan
            problem = comparator_failed(exc)
            _log_failure(f"{category.value}: {problem}")
            reason = f"{category.value} {problem}"
            judged[category] = Section(category, None, unavailable=reason, problems=(*section.problems, problem))
            continue
        findings.extend(f for f in found if f.category == category)
    return Compared(judged, tuple(findings))


def compare(declared: DeclaredState, sections: Mapping[Category, Section[Any]]) -> tuple[Finding, ...]:
    """The findings alone. A category whose comparator raised has none here: whoever builds a report
    or a verdict from them uses `compare_sections`, which says that category is unavailable."""
    return compare_sections(declared, sections).findings


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
        # a link loop or an unreadable link is no generation; the generation category says why
        try:
            target = root.resolve(path)
            return target if target.startswith("/nix/store/") and root.real(target).exists() else None
        except OSError:
            return None

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
        scanned=scan_target.capture(root),
        layout=_layout(declared, sections),
    )


def _layout(declared: DeclaredState, sections: Mapping[Category, Section[Any]]) -> dict[str, str]:
    """The report's layout: declared, and confirmed by the etc and users sections when captured."""
    etc = sections.get(Category.ETC)
    users = sections.get(Category.USERS)
    etc_live = getattr(etc.data, "live_layout", None) if etc is not None else None
    accounts_live = getattr(users.data, "live_accounts", None) if users is not None else None
    return layout.report_layout(declared.layout, etc_live, accounts_live)


def scan(opts: ScanOptions, progress: Progress | None = None) -> Report:
    """A full scan of every category."""
    if progress:
        progress(f"evaluating {opts.flake}#{opts.host}")
    declared = load_declared(opts)
    compared = compare_sections(declared, capture(opts.root, declared, TABLE, progress, opts.cache_dir))
    return build_report(declared, opts.root, compared.sections, compared.findings, opts.policy)


__all__ = [
    "Compared",
    "ScanOptions",
    "Severity",
    "build_report",
    "capture",
    "compare",
    "compare_sections",
    "exit_code",
    "scan",
    "unavailable",
]
