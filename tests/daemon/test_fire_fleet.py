"""Issue 9 (6): the fleet sender survives any single error and its queue is bounded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import wait_for

from kube.conftest import FakeAPI, make_report, write_kubeconfig
from nixdrift.config import KubernetesConfig
from nixdrift.report.metrics import DaemonStats, render_prometheus
from nixdrift.sinks.kube import KubeSink


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    server = FakeAPI()
    server.start()
    yield server
    server.stop()


def sink_for(api: FakeAPI, tmp_path: Path, **kw: object) -> KubeSink:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
    cfg = KubernetesConfig(enable=True, kubeconfig=str(kubeconfig), namespace="fleet", heartbeat=3600)
    return KubeSink(cfg, tmp_path / "state", "9.9.9", backoff_initial=0.05, backoff_max=0.2, **kw)  # type: ignore[arg-type]


def test_an_outbox_that_cannot_be_read_does_not_stop_the_sender(api: FakeAPI, tmp_path: Path) -> None:
    sink = sink_for(api, tmp_path)
    try:
        outbox = tmp_path / "state" / "nixdrift.db"
        outbox.write_bytes(b"this is not a database" * 100)  # a real SQLite error on every use
        sink.submit(make_report("web1", generated_at="2024-05-01T12:00:00Z"), changed=True)
        wait_for(lambda: "not a database" in sink.last_error, 30, "the sender to hit the broken outbox")
        assert sink._thread.is_alive()
        outbox.unlink()  # fixed (as a freed disk or a restored file would be)
        sink.submit(make_report("web1", generated_at="2024-05-01T12:05:00Z"), changed=True)
        wait_for(lambda: ("fleet", "web1") in api.objects, 30, "the report to land after the error")
        sent = api.objects[("fleet", "web1")]
        assert sent["metadata"]["annotations"]  # the real object, applied by the real client
        assert sink._thread.is_alive()
    finally:
        sink.close(timeout=2)


def test_reports_waiting_for_the_sender_are_bounded_oldest_dropped_and_counted(api: FakeAPI, tmp_path: Path) -> None:
    sink = sink_for(api, tmp_path, max_pending=4)
    try:
        with sink._flush_lock:  # the sender is busy (as it would be on a slow disk) while reports pile up
            for minute in range(10):
                sink.submit(make_report("web1", generated_at=f"2024-05-01T12:{minute:02d}:00Z"), changed=minute == 0)
            assert len(sink._pending) == 4 and sink.dropped == 6
            assert next(r.generated_at for r, _ in sink._pending) == "2024-05-01T12:06:00Z"
        metrics = render_prometheus(make_report("web1"), DaemonStats(fleet_dropped_total=sink.dropped))
        assert "nixdrift_fleet_reports_dropped_total 6\n" in metrics
        wait_for(lambda: ("fleet", "web1") in api.objects, 10, "the newest report to land")
        wait_for(
            lambda: "12:09:00" in str(api.objects[("fleet", "web1")]), 10, "the newest, not the oldest, to be sent"
        )
    finally:
        sink.close(timeout=2)
