"""The terminal rendering of a report (`nixdrift check`).

Every string that comes from the host goes through `safe_line()`: a file name holding an escape
sequence must not be able to repaint the operator's terminal. Colour is added by severity only,
and only when asked for.
"""

from __future__ import annotations

from collections.abc import Mapping

from nixdrift.models import Finding, Report, Severity, sort_findings
from nixdrift.redact import strip_userinfo
from nixdrift.text import display

RESET = "\x1b[0m"
COLORS = {
    Severity.CRITICAL: "\x1b[1;31m",  # bold red
    Severity.HIGH: "\x1b[31m",  # red
    Severity.MEDIUM: "\x1b[33m",  # yellow
    Severity.LOW: "\x1b[36m",  # cyan
    Severity.INFO: "\x1b[2m",  # dim
}


def safe_line(text: str) -> str:
    """One line with no control character and no URL credentials: C0, C1 (a lone CSI U+009B) and
    undecodable bytes as `\\xNN`, bidi overrides and isolates and line separators as `\\uNNNN`
    (`text.display`). Backslashes are not doubled: ids and paths arrive escaped (`printable`)."""
    return display(strip_userinfo(text))


def paint(text: str, severity: Severity, color: bool) -> str:
    return f"{COLORS[severity]}{text}{RESET}" if color else text


def summary_line(report: Report) -> str:
    """`3 findings: 1 critical, 2 high` (active findings only; accepted ones are counted apart)."""
    counts = report.summary()
    total = sum(counts.values())
    noun = "finding" if total == 1 else "findings"
    parts = [f"{n} {label}" for label, n in counts.items() if n]
    line = f"{total} {noun}: {', '.join(parts)}" if parts else f"{total} {noun}"
    accepted = len(report.findings) - len(report.active)
    if accepted:
        line += f" ({accepted} accepted)"
    above = len(report.at_or_above_threshold())
    return line + f"; {above} at or above threshold {report.threshold.label}"


def header(report: Report) -> list[str]:
    flake = report.flake
    revision = safe_line(flake.revision) if flake.revision else "unknown revision"
    dirty = " (dirty)" if flake.dirty else ""
    gens = report.generations
    if any(c.is_kube for c in report.categories):  # a cluster's (`nixdrift kube`): no system generations
        return [
            f"nixdrift: {safe_line(report.host)} at {safe_line(report.generated_at)}",
            f"manifests: {safe_line(flake.reference)} @ {revision}{dirty}",
        ]
    lines = [
        f"nixdrift: {safe_line(report.host)} at {safe_line(report.generated_at)}",
        f"flake:    {safe_line(flake.reference)} @ {revision}{dirty}",
        f"declared: {safe_line(gens.declared or '-')}",
        f"current:  {safe_line(gens.current or '-')}",
        f"booted:   {safe_line(gens.booted or '-')}",
    ]
    if gens.declared and gens.current and gens.declared != gens.current:
        lines.append("          (the running system is not the declared one)")
    if report.layout:
        lines.append(f"layout:   {safe_line(layout_text(report.layout))}")
    return lines


def layout_text(layout: Mapping[str, str]) -> str:
    """`etc overlay, accounts userborn, init nixos-init (live: ...)` from a report's layout field."""
    parts = [f"{k} {layout[k]}" for k in ("etc", "accounts", "init") if k in layout]
    live = layout.get("live")
    return ", ".join(parts) + (f" (live: {live})" if live else "")


def category_lines(report: Report) -> list[str]:
    items = sorted(report.categories.items(), key=lambda kv: kv[0].value)
    width = max((len(c.value) for c, _ in items), default=0)
    return [f"  {c.value:<{width}}  {safe_line(status)}" for c, status in items]


def finding_lines(f: Finding, color: bool) -> list[str]:
    lines = [
        f"  * {paint(safe_line(f.id), f.severity, color)}",
        f"    {safe_line(f.message)}",
        f"    expected: {safe_line(f.expected or '-')} -> actual: {safe_line(f.actual or '-')}",
    ]
    if f.path:
        lines.append(f"    path: {safe_line(f.path)}")
    if f.fix.command:
        safety = "safe" if f.fix.safe else f"review: {safe_line(f.fix.reason or 'not safe to automate')}"
        lines.append(f"    fix:  {safe_line(f.fix.command)}  [{safety}]")
    if f.count > 1:
        lines.append(f"    seen {f.count} times since {safe_line(f.first_seen or '?')}")
    return lines


def render(report: Report, *, color: bool = False) -> str:
    out = header(report)
    if report.categories:
        out += ["", "categories:", *category_lines(report)]
    findings = sort_findings(report.active)
    for severity in sorted(Severity, reverse=True):
        group = [f for f in findings if f.severity == severity]
        if not group:
            continue
        out += ["", paint(f"{severity.label.upper()} ({len(group)})", severity, color)]
        for f in group:
            out += finding_lines(f, color)
    accepted = sort_findings([f for f in report.findings if f.accepted])
    if accepted:
        out += ["", f"accepted ({len(accepted)}):"]
        out += [f"  {f.severity.label:<8} {safe_line(f.id)}: {safe_line(f.message)}" for f in accepted]
    if report.problems:
        out += ["", f"problems ({len(report.problems)}):"]
        out += [f"  - {safe_line(p)}" for p in report.problems]
    out += ["", summary_line(report)]
    return "\n".join(out) + "\n"
