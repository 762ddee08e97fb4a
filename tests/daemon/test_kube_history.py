"""The daemon's cluster checks share the host's history: findings in the SQLite database with first
and last seen and counts, events for `nixdrift history --category kube-...`, `nixdrift accept` on a
cluster finding, journald alerts with the host's fields and MESSAGE_IDs through the alert outbox,
and escalation of drift that keeps coming back."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_journald import parse as parse_datagram

from kube.conftest import no_proxy, wait_for, write_kubeconfig
from kube.kubeapi import FakeCluster, running_cluster, shop_repo
from nixdrift.config import parse as parse_config
from nixdrift.kube.scan import KubeOptions
from nixdrift.kube.schedule import KubeScheduler, start_from_config
from nixdrift.models import Category, Severity
from nixdrift.service.history import Store
from nixdrift.service.tracker import REPEAT_LIMIT, Tracker
from nixdrift.service.worker import Worker
from nixdrift.sinks.journald import Event, JournalSink
from nixdrift.sinks.kube import api_client

NETPOL = Category.KUBE_NETWORK_POLICIES
EXTRA = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "allow-all", "namespace": "shop"},
    "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]},
}


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


class Journal:
    """A bound journald socket: what the daemon sent, field by field."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    def received(self) -> list[dict[str, str]]:
        out = []
        while True:
            try:
                out.append(parse_datagram(self.sock.recv(65536)))
            except BlockingIOError:
                return out


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    no_proxy(monkeypatch)


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    yield from running_cluster()


@pytest.fixture
def manifests(tmp_path: Path, cluster: FakeCluster) -> Path:
    return shop_repo(tmp_path, cluster)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sock")
    yield j
    j.sock.close()


def worker_deliver(store: Store, sink: JournalSink) -> Any:
    """The worker's own delivery from the outbox, without the rest of a worker."""
    fake = SimpleNamespace(store=store, journal=sink, _deliver_lock=threading.Lock())
    return lambda: Worker.deliver(fake)  # type: ignore[arg-type]


def scheduler_on(store: Store, cluster: FakeCluster, manifests: Path, tmp: Path, sink: JournalSink) -> KubeScheduler:
    return KubeScheduler(
        opts=KubeOptions(manifests=manifests, cluster_name="prod"),
        intervals={NETPOL.value: 300},
        clock=Clock(),
        api=api_client(str(write_kubeconfig(tmp / "kubeconfig", cluster.url))),
        store=store,
        deliver=worker_deliver(store, sink),
        history_path=tmp / "must-not-be-written.json",
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nixdrift", *args], capture_output=True, text=True, timeout=60)


def step(s: KubeScheduler) -> Any:
    clock = s.clock
    assert isinstance(clock, Clock)
    clock.now += 301
    report = s.run_due()
    assert report is not None
    return report


def test_cluster_findings_live_in_the_host_history_and_alert_through_journald(
    cluster: FakeCluster, manifests: Path, tmp_path: Path, journal: Journal
) -> None:
    state = tmp_path / "state"
    store = Store.open(state)
    sink = JournalSink(str(journal.path))
    checks = scheduler_on(store, cluster, manifests, tmp_path, sink)
    clean = checks.run_due()
    assert clean is not None and clean.findings == ()
    assert journal.received() == []

    cluster.create(EXTRA)  # `kubectl create` of a policy no manifest declares
    report = step(checks)
    (found,) = report.findings
    assert found.category is NETPOL and found.count == 1 and found.first_seen
    stored = store.active()[found.id]
    assert (stored.first_seen, stored.count, stored.severity) == (found.first_seen, 1, found.severity)
    (alert,) = journal.received()
    assert alert["MESSAGE_ID"] == Event.NEW.message_id
    assert alert["NIXDRIFT_ID"] == found.id
    assert alert["NIXDRIFT_CATEGORY"] == NETPOL.value
    assert alert["NIXDRIFT_SEVERITY"] == found.severity.label
    assert alert["PRIORITY"] == str(found.severity.journald_priority)
    assert not (tmp_path / "must-not-be-written.json").exists()  # the database is the one history

    step(checks)  # still there: no second alert, still one appearance
    assert journal.received() == []
    assert store.active()[found.id].count == 1

    cluster.delete("NetworkPolicy", "shop", "allow-all")
    report = step(checks)
    assert report.findings == () and report.categories[NETPOL] == "ok"
    assert found.id not in store.active()
    (resolved,) = journal.received()
    assert resolved["MESSAGE_ID"] == Event.RESOLVED.message_id and resolved["NIXDRIFT_ID"] == found.id

    # back again and again: the appearance after the REPEAT_LIMIT-th in 24 h escalates one level
    for _ in range(REPEAT_LIMIT - 1):
        cluster.create(EXTRA)
        step(checks)
        cluster.delete("NetworkPolicy", "shop", "allow-all")
        step(checks)
    journal.received()
    cluster.create(EXTRA)
    (again,) = step(checks).findings
    assert again.severity is found.severity.escalated() and again.severity > found.severity
    assert "appeared 4 times in 24 h" in again.message
    (escalated,) = journal.received()
    assert escalated["NIXDRIFT_SEVERITY"] == again.severity.label

    history = cli("history", "--state-dir", str(state), "--category", NETPOL.value, "--format", "json")
    assert history.returncode == 0, history.stderr
    kinds = [(e["kind"], e["id"]) for e in json.loads(history.stdout)]
    assert kinds == [("new", found.id), ("resolved", found.id)] * REPEAT_LIMIT + [("new", found.id)]
    other = cli("history", "--state-dir", str(state), "--category", "etc", "--format", "json")
    assert json.loads(other.stdout) == []

    accepted = cli("accept", "--state-dir", str(state), found.id, "--reason", "the shop team's test policy")
    assert accepted.returncode == 0 and f"accepted {found.id}" in accepted.stdout, accepted.stderr
    report = step(checks)
    (quiet,) = report.findings
    assert quiet.accepted and report.categories[NETPOL] == "ok"
    cluster.delete("NetworkPolicy", "shop", "allow-all")
    step(checks)
    assert journal.received() == []  # accepted drift resolves quietly
    store.close()


def test_a_restart_keeps_first_seen_and_the_host_tracker_never_sees_cluster_findings(
    cluster: FakeCluster, manifests: Path, tmp_path: Path, journal: Journal
) -> None:
    state = tmp_path / "state"
    store = Store.open(state)
    sink = JournalSink(str(journal.path))
    cluster.create(EXTRA)
    (before,) = scheduler_on(store, cluster, manifests, tmp_path, sink).run_due().findings  # type: ignore[union-attr]
    store.close()

    store = Store.open(state)  # the daemon again
    assert Tracker(store, Severity.LOW).current() == []  # the host's report holds no cluster finding
    again = scheduler_on(store, cluster, manifests, tmp_path, sink)
    (after,) = again.run_due().findings  # type: ignore[union-attr]
    assert after.id == before.id and after.first_seen == before.first_seen and after.count == 1
    assert len(journal.received()) == 1  # one alert, not a second on restart
    store.close()


def test_the_daemon_wiring_records_cluster_findings_in_its_history(
    cluster: FakeCluster, manifests: Path, tmp_path: Path, journal: Journal
) -> None:
    cluster.create(EXTRA)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
    cfg = parse_config(
        f"reportDir: {tmp_path / 'reports'}\n"
        f"kube:\n  enable: true\n  manifests: {manifests}\n  kubeconfig: {kubeconfig}\n  cluster: prod\n"
    )
    store = Store.open(tmp_path / "state")
    sink = JournalSink(str(journal.path))
    checks = start_from_config(cfg, tmp_path / "state", store=store, deliver=worker_deliver(store, sink))
    assert checks is not None
    alerts: list[dict[str, str]] = []
    try:
        wait_for(lambda: alerts.extend(journal.received()) or alerts, timeout=30, what="the cluster's alert")
    finally:
        checks.stop()
    assert [a["NIXDRIFT_CATEGORY"] for a in alerts] == [NETPOL.value]
    assert {f.category for f in store.active().values()} == {NETPOL}
    store.close()


@pytest.mark.nix
@pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")
def test_a_real_daemon_alerts_once_and_keeps_cluster_and_host_findings_apart(
    cluster: FakeCluster, manifests: Path, tmp_path: Path
) -> None:
    from daemon_harness import Daemon
    from daemon_host import build_host

    cluster.create(EXTRA)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
    config = tmp_path / "config.yaml"
    config.write_text(
        "alertThreshold: low\n"
        f"kube:\n  enable: true\n  manifests: {manifests}\n  kubeconfig: {kubeconfig}\n  cluster: prod\n"
    )
    daemon = Daemon(host=build_host(tmp_path), state=tmp_path / "state", config=config)
    daemon.start()
    try:
        daemon.wait_ready()
        alert = daemon.wait_alert(timeout=60, event="new", id="kube-network-policies/")
        daemon.host.etc("after-kube.conf").write_text("x\n")  # the host's own path goes on beside it
        host_alert = daemon.wait_alert(event="new", path="/etc/after-kube.conf")
    finally:
        daemon.stop()
    assert alert.severity == "medium" and host_alert.id.startswith("etc/")
    assert [a.id for a in daemon.alerts()].count(alert.id) == 1  # two threads deliver; each alert goes once
    history = cli("history", "--state-dir", str(daemon.state), "--category", NETPOL.value, "--format", "json")
    assert [(e["kind"], e["id"]) for e in json.loads(history.stdout)] == [("new", alert.id)], history.stderr
    store = Store.open(daemon.state)
    try:
        report = json.loads(store.meta("report") or "{}")
        active = store.active()
    finally:
        store.close()
    assert {alert.id, host_alert.id} <= set(active)  # one database holds both
    assert host_alert.id in {f["id"] for f in report["findings"]}  # published after the cluster's alert
    assert report["categories"] and not [c for c in report["categories"] if c.startswith("kube-")]
    assert not [f for f in report["findings"] if f["category"].startswith("kube-")]  # the host's report


def test_an_acceptance_shows_at_the_next_run_even_of_another_check(
    cluster: FakeCluster, manifests: Path, tmp_path: Path, journal: Journal
) -> None:
    state = tmp_path / "state"
    store = Store.open(state)
    checks = scheduler_on(store, cluster, manifests, tmp_path, JournalSink(str(journal.path)))
    checks.intervals = {NETPOL.value: 86400, Category.KUBE_RBAC.value: 300}
    cluster.create(EXTRA)
    first = checks.run_due()
    assert first is not None and first.categories[NETPOL] == "drift"
    (found,) = first.findings
    accepted = cli("accept", "--state-dir", str(state), found.id, "--reason", "known")
    assert accepted.returncode == 0, accepted.stderr
    report = step(checks)  # only the RBAC check is due: the policy is not read again
    (quiet,) = report.findings
    assert quiet.id == found.id and quiet.accepted
    assert report.categories[NETPOL] == "ok"
    store.close()
