"""Renderers: text, JSON, Markdown, the remediation script and metrics.

They only render: every decision (severity, exceptions, threshold) was made by the policy before
the report reached them.
"""

from __future__ import annotations

from pathlib import Path

from nixdrift.models import Report
from nixdrift.report import jsonfmt, markdown, script, text
from nixdrift.report.metrics import DaemonStats, atomic_write, render_metrics_json, render_prometheus, write_prometheus

FORMATS = ("text", "json", "markdown")


def render(report: Report, fmt: str, *, color: bool = False) -> str:
    match fmt:
        case "text":
            return text.render(report, color=color)
        case "json":
            return jsonfmt.render(report)
        case "markdown":
            return markdown.render(report)
        case _:
            raise ValueError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")


def write_all(report: Report, out: Path, stats: DaemonStats | None = None) -> list[Path]:
    """Write the operator's report set into `out` (created), each file atomically."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, bytes, int]] = [
        ("drift-report.md", markdown.render(report).encode("utf-8"), 0o644),
        ("drift-report.json", jsonfmt.render(report).encode("utf-8"), 0o644),
        ("remediation-script.sh", script.encode(script.render(report)), 0o755),
        ("drift-metrics.json", render_metrics_json(report, stats).encode("utf-8"), 0o644),
        ("nixdrift.prom", render_prometheus(report, stats).encode("utf-8"), 0o644),
    ]
    return [atomic_write(out / name, data, mode) for name, data, mode in files]


__all__ = ["FORMATS", "DaemonStats", "render", "write_all", "write_prometheus"]
