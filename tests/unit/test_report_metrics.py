"""Metrics for monitoring: drift-metrics.json, the Prometheus textfile, and the full report set."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factories import make_report as report_of
from factories import port_opened
from nixdrift.compare.common import finding
from nixdrift.models import Category, Finding, Generations, Kind, Report, Severity
from nixdrift.report import DaemonStats, write_all, write_prometheus
from nixdrift.report.metrics import atomic_write, metrics_json, render_prometheus


def group_member(user: str = "alice"):
    return finding(
        rule_name="group-member",
        id=f"users/{user}/groups",
        category=Category.USERS,
        subject=user,
        kind=Kind.CHANGED,
        expected="users",
        actual="users,video",
        message=f"{user} was added to video",
    )


def make_report(*findings: Finding, categories=None, host="web1") -> Report:
    gens = Generations(None, None, None)
    return report_of(*findings, categories=categories, threshold=Severity.HIGH, host=host, generations=gens)


STATS = DaemonStats(
    scan_durations={"etc": 0.25, "users": 0.0125},
    events_lost_total=2,
    watch_healthy={"/etc": True, '/var/lib/"odd"\\tree\n': False},
    events_total=41,
    last_full_scan=1714557600.0,
)

SAMPLE = re.compile(r'^([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+)$')


def parse_exposition(text: str) -> dict[str, dict[str, float]]:
    """A strict reader of the text format 0.0.4: HELP and TYPE before a family's samples, one
    family per block, label values escaped. Returns family -> {label set: value}."""
    assert text.endswith("\n")
    families: dict[str, dict[str, float]] = {}
    typed: set[str] = set()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in families, f"{name} declared twice"
            families[name] = {}
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter") and name in families and name not in typed
            typed.add(name)
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            assert m.group(1) in typed, f"sample before TYPE: {line!r}"
            families[m.group(1)][m.group(2) or ""] = float(m.group(3))
    return families


def test_findings_gauge_has_every_severity_and_category_with_zeros() -> None:
    fam = parse_exposition(render_prometheus(make_report(port_opened(1), port_opened(2), group_member())))
    gauge = fam["nixdrift_findings"]
    assert len(gauge) == len(Severity) * len(Category.host())
    assert gauge['{severity="critical",category="firewall"}'] == 2
    assert gauge['{severity="medium",category="users"}'] == 1
    assert gauge['{severity="info",category="repo"}'] == 0
    assert sum(gauge.values()) == 3
    assert fam["nixdrift_findings_total"] == {"": 3}
    assert fam["nixdrift_findings_at_or_above_threshold"] == {'{threshold="high"}': 2}


def test_accepted_findings_are_not_counted() -> None:
    fam = parse_exposition(render_prometheus(make_report(port_opened().with_(accepted=True))))
    assert fam["nixdrift_findings_total"] == {"": 0}
    assert fam["nixdrift_findings"]['{severity="critical",category="firewall"}'] == 0


def test_unavailable_categories_and_last_scan_time() -> None:
    cats = {Category.EXPOSURE: "unavailable: psutil denied", Category.ETC: "ok"}
    fam = parse_exposition(render_prometheus(make_report(categories=cats)))
    unavailable = fam["nixdrift_category_unavailable"]
    assert unavailable['{category="exposure"}'] == 1
    assert unavailable['{category="etc"}'] == 0
    assert unavailable['{category="mounts"}'] == 0  # not scanned at all is not "unavailable"
    assert fam["nixdrift_last_scan_timestamp_seconds"] == {"": 1714557600.0}


def test_daemon_stats_add_durations_events_and_watch_health_with_escaped_labels() -> None:
    fam = parse_exposition(render_prometheus(make_report(), STATS))
    assert fam["nixdrift_scan_duration_seconds"] == {'{category="etc"}': 0.25, '{category="users"}': 0.0125}
    assert fam["nixdrift_events_lost_total"] == {"": 2}
    assert fam["nixdrift_events_total"] == {"": 41}
    assert fam["nixdrift_watch_healthy"] == {'{tree="/etc"}': 1, '{tree="/var/lib/\\"odd\\"\\\\tree\\n"}': 0}
    assert fam["nixdrift_last_full_scan_timestamp_seconds"] == {"": 1714557600.0}


def test_without_stats_no_daemon_metrics() -> None:
    fam = parse_exposition(render_prometheus(make_report()))
    assert "nixdrift_events_total" not in fam and "nixdrift_watch_healthy" not in fam


@given(st.text(), st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_any_tree_name_gives_a_valid_exposition(tree: str, category: str) -> None:
    stats = DaemonStats(scan_durations={category: 1.5}, watch_healthy={tree: True})
    text = render_prometheus(make_report(), stats)
    text.encode("utf-8")
    fam = parse_exposition(text)
    assert len(fam["nixdrift_watch_healthy"]) == 1


def test_metrics_json_counts_by_severity_and_category() -> None:
    cats = {Category.FIREWALL: "drift", Category.USERS: "drift", Category.MOUNTS: "unavailable: no /proc"}
    data = metrics_json(make_report(port_opened(), group_member(), categories=cats), STATS)
    assert data["host"] == "web1" and data["generated_at"] == "2024-05-01T10:00:00Z"
    assert data["total"] == 2 and data["threshold"] == "high" and data["at_or_above_threshold"] == 1
    assert data["by_severity"] == {"critical": 1, "high": 0, "medium": 1, "low": 0, "info": 0}
    assert data["by_category"]["firewall"] == 1 and data["by_category"]["etc"] == 0
    assert data["categories"]["mounts"] == "unavailable: no /proc"
    assert data["scan_durations"] == {"etc": 0.25, "users": 0.0125}
    assert "scan_durations" not in metrics_json(make_report())


def test_write_all_writes_the_five_files(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "reports"
    report = make_report(port_opened(), group_member())
    paths = write_all(report, out, STATS)
    names = ["drift-report.md", "drift-report.json", "remediation-script.sh", "drift-metrics.json", "nixdrift.prom"]
    assert paths == [out / n for n in names]
    assert sorted(os.listdir(out)) == sorted(names)  # no temporary file left behind
    assert json.loads((out / "drift-report.json").read_text())["host"] == "web1"
    assert json.loads((out / "drift-metrics.json").read_text())["events_total"] == 41
    assert (out / "drift-report.md").read_text().startswith("# Drift report: web1")
    assert stat.S_IMODE((out / "remediation-script.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "nixdrift.prom").stat().st_mode) == 0o644
    parse_exposition((out / "nixdrift.prom").read_text())


def test_write_all_replaces_an_older_report(tmp_path: Path) -> None:
    write_all(make_report(port_opened()), tmp_path)
    write_all(make_report(), tmp_path)
    assert json.loads((tmp_path / "drift-report.json").read_text())["findings"] == []


def test_prometheus_file_is_never_seen_half_written(tmp_path: Path) -> None:
    path = tmp_path / "nixdrift.prom"
    big = make_report(*(port_opened(p) for p in range(1, 400)))
    small = make_report()
    write_prometheus(small, path)
    expected = {render_prometheus(big), render_prometheus(small)}
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(path.read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            write_prometheus(big if i % 2 else small, path)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert seen and set(seen) <= expected


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = atomic_write(tmp_path / "f", b"old")

    with pytest.raises(TypeError):
        atomic_write(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]
