"""A report's verdict: the categories nobody judged, and the exit code. Pure functions of the
report, apart from the pipeline, so that a command answering from a stored report (`check` with a
fresh daemon state) need not load the collectors to say how it ends."""

from __future__ import annotations

from nixdrift.models import Category, Report


def unavailable(report: Report) -> tuple[Category, ...]:
    """The categories the report could not judge (their drift, if any, went unseen)."""
    return tuple(
        sorted((c for c, s in report.categories.items() if s.startswith("unavailable")), key=lambda c: c.value)
    )


def exit_code(report: Report) -> int:
    """1 when something active is at or above the threshold; else 2 when a category could not be
    scanned (never claim "no drift" for what nobody looked at); else 0."""
    if report.at_or_above_threshold():
        return 1
    return 2 if unavailable(report) else 0


def not_scanned_line(report: Report, code: int) -> str | None:
    """The stderr line naming the categories nobody judged, or None when every one was scanned: an
    output without findings is then not a clean bill (exit 2), and drift found beside them may not
    be all of it."""
    missing = unavailable(report)
    if not missing:
        return None
    names = ", ".join(c.value for c in missing)
    verdict = "no drift found in the rest: exit 2, not clean" if code == 2 else "the drift found may be partial"
    return f"nixdrift: not scanned: {names} (unavailable, see categories); {verdict}"
