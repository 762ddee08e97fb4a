"""Metrics: `drift-metrics.json` and the Prometheus textfile `nixdrift.prom`.

node_exporter's textfile collector may read the file at any moment, so every file is written to a
temporary sibling and renamed over the old one (`atomic_write`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nixdrift.models import Category, Report, Severity

SEVERITIES = tuple(sorted(Severity, reverse=True))  # critical first


@dataclass(frozen=True, slots=True)
class DaemonStats:
    """What the daemon knows beyond one report: scan costs and the health of its watches."""

    scan_durations: Mapping[str, float] = field(default_factory=dict)  # category -> seconds
    events_lost_total: int = 0  # inotify overflows and the like
    watch_healthy: Mapping[str, bool] = field(default_factory=dict)  # tree -> False when polling instead
    events_total: int = 0
    last_full_scan: float | None = None  # unix time
    degraded: Mapping[str, str] = field(default_factory=dict)  # what the daemon cannot do now -> why
    fleet_dropped_total: int = 0  # reports the Kubernetes sender dropped to bound its queue


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write `data` to `path` so that a reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def counts_by_category(report: Report) -> dict[str, dict[str, int]]:
    """Active findings per category and severity, every combination present (zeros included)."""
    counts = {c.value: {s.label: 0 for s in SEVERITIES} for c in Category.family(report.categories)}
    for f in report.active:
        counts[f.category.value][f.severity.label] += 1
    return counts


def timestamp_of(iso: str) -> float | None:
    """Unix time of an ISO 8601 stamp (`2024-05-01T10:00:00Z`), None when it is not one."""
    try:
        stamp = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def metrics_json(report: Report, stats: DaemonStats | None = None) -> dict[str, Any]:
    by_category = counts_by_category(report)
    data: dict[str, Any] = {
        "host": report.host,
        "generated_at": report.generated_at,
        "threshold": report.threshold.label,
        "total": len(report.active),
        "at_or_above_threshold": len(report.at_or_above_threshold()),
        "accepted": len(report.findings) - len(report.active),
        "by_severity": report.summary(),
        "by_category": {c: sum(v.values()) for c, v in by_category.items()},
        "by_category_severity": by_category,
        "categories": {c.value: s for c, s in sorted(report.categories.items(), key=lambda kv: kv[0].value)},
        "unavailable": sorted(c.value for c in report.categories if _unavailable(report, c)),
        "problems": len(report.problems),
    }
    if stats is not None:
        data["scan_durations"] = dict(sorted(stats.scan_durations.items()))
        data["events_total"] = stats.events_total
        data["events_lost_total"] = stats.events_lost_total
        data["watch_healthy"] = dict(sorted(stats.watch_healthy.items()))
        data["last_full_scan"] = stats.last_full_scan
    return data


def render_metrics_json(report: Report, stats: DaemonStats | None = None) -> str:
    return json.dumps(metrics_json(report, stats), indent=2, sort_keys=True) + "\n"


# Prometheus text exposition format 0.0.4


def label_value(text: str) -> str:
    """A label value: valid UTF-8 (odd bytes shown as escapes), with \\, " and newline escaped."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def sample_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            rendered = ",".join(f'{k}="{label_value(v)}"' for k, v in labels.items())
            self.lines.append(
                f"{name}{{{rendered}}} {sample_value(value)}" if rendered else f"{name} {sample_value(value)}"
            )

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_prometheus(report: Report, stats: DaemonStats | None = None) -> str:
    out = _Exposition()
    by_category = counts_by_category(report)
    out.metric(
        "nixdrift_findings",
        "gauge",
        "Active (not accepted) drift findings by severity and category.",
        (({"severity": s, "category": c}, n) for c, per in by_category.items() for s, n in per.items()),
    )
    out.metric("nixdrift_findings_total", "gauge", "Active drift findings, all severities.", [({}, len(report.active))])
    out.metric(
        "nixdrift_findings_at_or_above_threshold",
        "gauge",
        "Active drift findings at or above the alert threshold.",
        [({"threshold": report.threshold.label}, len(report.at_or_above_threshold()))],
    )
    out.metric(
        "nixdrift_category_unavailable",
        "gauge",
        "1 when a category could not be scanned (its drift would go unseen).",
        (({"category": c.value}, _unavailable(report, c)) for c in Category.family(report.categories)),
    )
    stamp = timestamp_of(report.generated_at)
    if stamp is not None:
        out.metric("nixdrift_last_scan_timestamp_seconds", "gauge", "Unix time of the last report.", [({}, stamp)])
    if stats is not None:
        _daemon_metrics(out, stats)
    return out.text()


def _unavailable(report: Report, category: Category) -> int:
    return int(report.categories.get(category, "").startswith("unavailable"))


def _daemon_metrics(out: _Exposition, stats: DaemonStats) -> None:
    out.metric(
        "nixdrift_scan_duration_seconds",
        "gauge",
        "Seconds the last scan of each category took.",
        (({"category": c}, s) for c, s in sorted(stats.scan_durations.items())),
    )
    out.metric("nixdrift_events_total", "counter", "Filesystem events received.", [({}, stats.events_total)])
    out.metric(
        "nixdrift_events_lost_total",
        "counter",
        "Filesystem events lost (inotify overflow); each loss triggers a rescan.",
        [({}, stats.events_lost_total)],
    )
    out.metric(
        "nixdrift_watch_healthy",
        "gauge",
        "1 when a tree is watched with inotify, 0 when it fell back to polling.",
        (({"tree": t}, int(ok)) for t, ok in sorted(stats.watch_healthy.items())),
    )
    out.metric(
        "nixdrift_degraded",
        "gauge",
        "1 while the daemon cannot do part of its job (database, worker, a watched tree); see STATUS.",
        [({}, int(bool(stats.degraded)))] + [({"what": k}, 1) for k in sorted(stats.degraded)],
    )
    out.metric(
        "nixdrift_fleet_reports_dropped_total",
        "counter",
        "Reports not published because newer ones replaced them while the API server was away.",
        [({}, stats.fleet_dropped_total)],
    )
    if stats.last_full_scan is not None:
        out.metric(
            "nixdrift_last_full_scan_timestamp_seconds",
            "gauge",
            "Unix time of the last full reconciliation scan.",
            [({}, stats.last_full_scan)],
        )


def write_prometheus(report: Report, path: Path, stats: DaemonStats | None = None) -> Path:
    """Write the textfile for node_exporter atomically (it may read at any moment)."""
    return atomic_write(path, render_prometheus(report, stats).encode("utf-8"))


def write_metrics_json(report: Report, path: Path, stats: DaemonStats | None = None) -> Path:
    return atomic_write(path, render_metrics_json(report, stats).encode("utf-8"))
