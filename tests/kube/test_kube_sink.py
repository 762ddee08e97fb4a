"""KubeSink through the real kubernetes client against a local HTTP endpoint: what goes on the wire,
backoff while the API server refuses or hangs, newest first on recovery, nothing lost on restart."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nixdrift.config import KubernetesConfig
from nixdrift.models import Finding, Report, Severity
from nixdrift.sinks.kube import KubeSink, policy_report
from nixdrift.sinks.outbox import Outbox, State

Poll = Callable[..., Any]


@pytest.fixture
def sinks() -> Iterator[list[KubeSink]]:
    made: list[KubeSink] = []
    yield made
    for sink in made:
        sink.close(timeout=2)


@pytest.fixture
def start(sinks: list[KubeSink], kubeconfig: Path, tmp_path: Path) -> Callable[..., KubeSink]:
    def make(heartbeat: int = 3600, request_timeout: float = 2.0, state: Path | None = None) -> KubeSink:
        cfg = KubernetesConfig(enable=True, kubeconfig=str(kubeconfig), namespace="nixdrift", heartbeat=heartbeat)
        sink = KubeSink(
            cfg,
            state or tmp_path / "state",
            "9.9.9",
            request_timeout=request_timeout,
            backoff_initial=0.1,
            backoff_max=0.8,
        )
        sinks.append(sink)
        return sink

    return make


def _reports(report_factory: Callable[..., Report], finding_factory: Callable[..., Finding], n: int) -> list[Report]:
    return [
        report_factory(
            "web1",
            [finding_factory(f"firewall/tcp-{8000 + i}/open", Severity.CRITICAL)],
            generated_at=f"2024-05-01T12:0{i}:00Z",
        )
        for i in range(n)
    ]


def _scan_time(body: bytes) -> str:
    return str(yaml.safe_load(body)["metadata"]["annotations"]["nixdrift/scan-time"])


def test_server_side_apply_on_the_wire(
    fake_api: Any,
    start: Callable[..., KubeSink],
    report_factory: Callable[..., Report],
    finding_factory: Callable[..., Finding],
    validate: Callable[[Any], None],
    poll: Poll,
) -> None:
    report = report_factory("web1", [finding_factory("services/sshd.service/enabled", Severity.HIGH)])
    sink = start()
    sink.submit(report, changed=True)
    (req,) = poll(fake_api.patches, what="the PATCH")
    assert req.method == "PATCH"
    assert req.path == "/apis/wgpolicyk8s.io/v1alpha2/namespaces/nixdrift/policyreports/web1"
    assert req.query["fieldManager"] == ["nixdrift"]
    assert req.query["force"] == ["true"]
    assert req.headers["content-type"] == "application/apply-patch+yaml"
    assert req.headers["authorization"] == "Bearer test-token"
    sent = yaml.safe_load(req.body)
    validate(sent)
    expected = policy_report(report, namespace="nixdrift", agent_version="9.9.9", heartbeat=3600)
    sent_at = sent["metadata"]["annotations"].pop("nixdrift/sent-at")
    assert sent_at.endswith("Z")
    assert sent == expected
    poll(lambda: sink.outbox.queued_count() == 0, what="the row marked sent")
    assert [r.state for r in sink.outbox.rows()] == [State.SENT]


def test_errors_back_off_and_the_newest_report_lands_first(
    fake_api: Any,
    start: Callable[..., KubeSink],
    report_factory: Callable[..., Report],
    finding_factory: Callable[..., Finding],
    poll: Poll,
) -> None:
    fake_api.script = [503, 500, 503, 500, 503]
    r1, r2, r3 = _reports(report_factory, finding_factory, 3)
    sink = start()
    sink.submit(r1, changed=True)
    poll(lambda: len(fake_api.patches()) >= 2, what="a retry")
    sink.submit(r2, changed=True)
    sink.submit(r3, changed=True)
    poll(lambda: any(r.state is State.SENT for r in sink.outbox.rows()), what="recovery")
    patches = fake_api.patches()
    assert len(patches) == 6  # five refused, then one that landed
    assert _scan_time(patches[-1].body) == r3.generated_at  # the newest, not the oldest
    states = {_scan_time(r.body.encode()): r.state for r in sink.outbox.rows()}
    assert states == {r1.generated_at: State.SUPERSEDED, r2.generated_at: State.SUPERSEDED, r3.generated_at: State.SENT}
    assert fake_api.objects[("nixdrift", "web1")]["metadata"]["annotations"]["nixdrift/scan-time"] == r3.generated_at
    assert sink.failures == 0 and sink.last_error == ""


def test_retries_wait_longer_each_time(
    fake_api: Any,
    start: Callable[..., KubeSink],
    report_factory: Callable[..., Report],
    finding_factory: Callable[..., Finding],
    poll: Poll,
) -> None:
    fake_api.script = [503] * 5
    sink = start()
    sink.submit(_reports(report_factory, finding_factory, 1)[0], changed=True)
    poll(lambda: len(fake_api.patches()) >= 5, what="five attempts")
    stamps = [p.at for p in fake_api.patches()]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # backoff 0.1 * 2^n with equal jitter: each wait is at least half its step (0.05, 0.1, 0.2, 0.4)
    for gap, floor in zip(gaps, (0.05, 0.1, 0.2, 0.4), strict=False):
        assert gap >= floor, gaps
    assert sink.failures >= 4
    assert "503" in sink.last_error


def test_connection_refused_then_the_server_comes_back(
    fake_api: Any,
    start: Callable[..., KubeSink],
    report_factory: Callable[..., Report],
    finding_factory: Callable[..., Finding],
    poll: Poll,
) -> None:
    port = fake_api.port
    fake_api.stop()
    r1, r2 = _reports(report_factory, finding_factory, 2)
    sink = start()
    sink.submit(r1, changed=True)
    poll(lambda: sink.failures >= 2, what="refused attempts")
    sink.submit(r2, changed=True)
    assert sink.outbox.queued_count() >= 1
    fake_api.start(port)
    poll(fake_api.patches, what="the report after recovery")
    poll(lambda: sink.outbox.queued_count() == 0, what="the queue drained")
    assert [_scan_time(p.body) for p in fake_api.patches()] == [r2.generated_at]


def test_a_hanging_server_times_out_and_never_blocks_the_scan(
    fake_api: Any,
    start: Callable[..., KubeSink],
    report_factory: Callable[..., Report],
    finding_factory: Callable[..., Finding],
    poll: Poll,
) -> None:
    fake_api.script = ["hang", "hang"]
    reports = _reports(report_factory, finding_factory, 5)
    sink = start(request_timeout=0.3)
    began = time.monotonic()
    for r in reports:
        sink.submit(r, changed=True)
    assert time.monotonic() - began < 0.2  # submit only hands over
    poll(lambda: sink.failures >= 1, what="a timeout")
    assert "timed out" in sink.last_error.lower() or "timeout" in sink.last_error.lower()
    poll(lambda: fake_api.objects, timeout=15, what="the report after the hangs")
    assert fake_api.objects[("nixdrift", "web1")]["metadata"]["annotations"]["nixdrift/scan-time"] == (
        reports[-1].generated_at
    )


def test_nothing_is_lost_across_a_restart(
    fake_api: Any,
    start: Callable[..., KubeSink],
    report_factory: Callable[..., Report],
    finding_factory: Callable[..., Finding],
    tmp_path: Path,
    poll: Poll,
) -> None:
    port = fake_api.port
    fake_api.stop()
    r1, r2 = _reports(report_factory, finding_factory, 2)
    first = start()
    first.submit(r1, changed=True)
    first.submit(r2, changed=True)
    first.close(timeout=2)
    queued = [r for r in Outbox(tmp_path / "state" / "nixdrift.db").rows() if r.state is State.QUEUED]
    assert [r.generated_at for r in queued] == [r1.generated_at, r2.generated_at]
    fake_api.start(port)
    second = start()  # the daemon restarted; it has not scanned yet
    poll(fake_api.patches, what="the queued report sent by the new sink")
    poll(lambda: second.outbox.queued_count() == 0, what="the queue drained")
    assert [_scan_time(p.body) for p in fake_api.patches()] == [r2.generated_at]
    states = [r.state for r in second.outbox.rows()]
    assert states == [State.SUPERSEDED, State.SENT]


def test_unchanged_scans_wait_for_the_heartbeat(
    fake_api: Any,
    start: Callable[..., KubeSink],
    report_factory: Callable[..., Report],
    finding_factory: Callable[..., Finding],
    poll: Poll,
) -> None:
    r1, r2 = _reports(report_factory, finding_factory, 2)
    sink = start(heartbeat=1)
    began = time.monotonic()
    sink.submit(r1, changed=True)
    poll(fake_api.patches, what="the first report")
    sink.submit(r2, changed=False)  # nothing changed: not sent now ...
    assert len(fake_api.patches()) == 1
    poll(lambda: len(fake_api.patches()) >= 2, timeout=5, what="the heartbeat")
    assert time.monotonic() - began >= 0.9  # ... but at the heartbeat, with the newest scan
    assert _scan_time(fake_api.patches()[1].body) == r2.generated_at


def test_an_object_the_server_refuses_is_not_retried_forever(
    fake_api: Any,
    start: Callable[..., KubeSink],
    report_factory: Callable[..., Report],
    finding_factory: Callable[..., Finding],
    poll: Poll,
) -> None:
    fake_api.script = [422]
    r1, r2 = _reports(report_factory, finding_factory, 2)
    sink = start()
    sink.submit(r1, changed=True)
    poll(lambda: [r.state for r in sink.outbox.rows()] == [State.REJECTED], what="the rejection")
    sink.submit(r2, changed=True)
    poll(lambda: fake_api.objects, what="the next report")
    assert len(fake_api.patches()) == 2


def test_other_tables_in_the_state_database_are_left_alone(
    fake_api: Any,
    start: Callable[..., KubeSink],
    report_factory: Callable[..., Report],
    finding_factory: Callable[..., Finding],
    tmp_path: Path,
    poll: Poll,
) -> None:
    db = tmp_path / "state" / "nixdrift.db"
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scans (id INTEGER PRIMARY KEY, host TEXT)")
        conn.execute("INSERT INTO scans (host) VALUES ('web1')")
    sink = start()
    sink.submit(_reports(report_factory, finding_factory, 1)[0], changed=True)
    poll(lambda: sink.outbox.queued_count() == 0 and fake_api.objects, what="the report sent")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT host FROM scans").fetchall() == [("web1",)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"scans", "kube_outbox"} <= tables
