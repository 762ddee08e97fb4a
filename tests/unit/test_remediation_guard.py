"""Acting on the right machine (issue 8, items 5 and 6), on in-memory records and a real history.

What a scan read is recorded in the report (`scanned`); `target.refusal` is the one rule the
remediation script (in bash, see tests/integration/test_remediation_guard.py), `nixdrift remediate`
and auto-remediation apply. Accepted baselines apply to any report, however it was made.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from factories import dns_changed, make_report, port_opened
from nixdrift import pipeline, target
from nixdrift.compare.common import finding, sh
from nixdrift.errors import NixdriftError
from nixdrift.models import Category, Finding, Kind, Report, ScanTarget, Severity
from nixdrift.rootfs import Root
from nixdrift.service import remediate
from nixdrift.service.history import Store

MID = "0123456789abcdef0123456789abcdef"
OTHER_MID = "fedcba9876543210fedcba9876543210"
SYSTEM = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web1"
WEB1 = ScanTarget(host="web1", machine_id=MID, system=SYSTEM, root="/", live=True)


# --- the record --------------------------------------------------------------------------------


def test_the_record_round_trips_through_the_json_report() -> None:
    data = json.loads(json.dumps(replace(make_report(dns_changed()), scanned=WEB1).to_json()))
    assert data["scanned"] == {"host": "web1", "machine_id": MID, "system": SYSTEM, "root": "/", "live": True}
    assert Report.from_json(data).scanned == WEB1


def test_a_stored_report_from_before_the_record_still_loads_and_is_refused() -> None:
    old = make_report(dns_changed()).to_json()
    del old["scanned"]
    loaded = Report.from_json(old)
    assert loaded.scanned is None
    assert [f.id for f in loaded.findings] == ["network/dns/nameservers"]
    assert "does not record which machine" in (target.refusal(loaded.scanned, WEB1) or "")


@pytest.mark.parametrize("live", ["true", 1, "yes", None])
def test_only_a_json_true_is_a_live_scan(live: object) -> None:
    data = {**WEB1.to_json(), "live": live}
    assert ScanTarget.from_json(data).live is (live is True)


def test_capture_below_a_root_reads_that_roots_files(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "hostname").write_text("web1\n")
    (etc / "machine-id").write_text(MID + "\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "current-system").symlink_to(SYSTEM)
    got = target.capture(Root.of(tmp_path))
    assert got == ScanTarget(host="web1", machine_id=MID, system=SYSTEM, root=str(tmp_path), live=False)


def test_capture_records_nothing_it_cannot_vouch_for(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "machine-id").write_text("uninitialized\n")  # systemd's first-boot placeholder
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "current-system").symlink_to("/run/current-system")  # a loop
    got = target.capture(Root.of(tmp_path))
    assert (got.host, got.machine_id, got.system, got.live) == ("", None, None, False)


def test_the_live_record_is_this_kernels_host_name() -> None:
    got = target.here()
    assert got.live and got.root == "/"
    assert got.host == os.uname().nodename


# --- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "current", "why"),
    [
        (WEB1, WEB1, None),
        (WEB1, ScanTarget("web2", MID, SYSTEM, "/", True), "made for host 'web1', this is host 'web2'"),
        (WEB1, ScanTarget("web1", OTHER_MID, SYSTEM, "/", True), f"machine-id {MID}, this machine's is {OTHER_MID}"),
        (WEB1, ScanTarget("web1", None, SYSTEM, "/", True), "this machine's is unknown"),
        # a machine-id decides: another system (a rebuild since) on the same machine is still it
        (WEB1, ScanTarget("web1", MID, "/nix/store/b-other", "/", True), None),
        (ScanTarget("web1", None, SYSTEM, "/", True), ScanTarget("web1", None, SYSTEM, "/", True), None),
        (
            ScanTarget("web1", None, SYSTEM, "/", True),
            ScanTarget("web1", None, "/nix/store/b-other", "/", True),
            "no machine-id running",
        ),
        (ScanTarget("web1", None, None, "/", True), WEB1, "neither a machine-id nor a current system"),
        (ScanTarget("web1", MID, SYSTEM, "/srv/snap", False), WEB1, "scan of '/srv/snap' (--root)"),
        (None, WEB1, "does not record which machine"),
    ],
)
def test_refusal(recorded: ScanTarget | None, current: ScanTarget, why: str | None) -> None:
    got = target.refusal(recorded, current)
    if why is None:
        assert got is None
    else:
        assert got is not None and why in got


# --- accepted baselines (item 6) ---------------------------------------------------------------


def test_baselines_mark_accepted_drift_and_it_stops_counting() -> None:
    dns, port = dns_changed(), port_opened()
    only_dns = make_report(dns, categories={Category.NETWORK: "drift"})
    assert pipeline.exit_code(only_dns) == 1
    accepted = only_dns.with_baselines({dns.id: dns.actual})
    assert [f.accepted for f in accepted.findings] == [True]
    assert accepted.summary() == {"critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0}
    assert accepted.categories == {Category.NETWORK: "ok"}
    assert pipeline.exit_code(accepted) == 0
    both = make_report(dns, port, categories={Category.NETWORK: "drift", Category.FIREWALL: "drift"})
    both = both.with_baselines({dns.id: dns.actual})
    assert both.categories == {Category.NETWORK: "ok", Category.FIREWALL: "drift"}
    assert both.summary()["critical"] == 1 and both.summary()["low"] == 0


def test_baselines_leave_an_unavailable_category_unavailable() -> None:
    dns = dns_changed()
    report = make_report(dns, categories={Category.NETWORK: "drift", Category.MOUNTS: "unavailable: no mountinfo"})
    accepted = report.with_baselines({dns.id: dns.actual})
    assert accepted.categories == {Category.NETWORK: "ok", Category.MOUNTS: "unavailable: no mountinfo"}


def test_a_baseline_of_another_value_or_one_no_longer_held_does_not_accept() -> None:
    dns = dns_changed()
    stored = make_report(dns.with_(accepted=True), categories={Category.NETWORK: "ok"})  # accepted when stored
    for baselines in ({dns.id: "1.1.1.1 9.9.9.9"}, {}):
        again = stored.with_baselines(baselines)
        assert [f.accepted for f in again.findings] == [False]
        assert again.categories == {Category.NETWORK: "drift"}
        assert again.summary()["low"] == 1


# --- nixdrift remediate and auto-remediation: the history's report decides -------------------


def low_revert(path: Path) -> Finding:
    return finding(
        rule_name="dns-changed",  # low by default
        id=f"etc/{path.name}",
        category=Category.ETC,
        subject=path.name,
        kind=Kind.UNMANAGED,
        expected="absent",
        actual="file",
        message="a file to remove",
        command=sh("rm", "--", str(path)),
        safe=True,
    ).with_(severity=Severity.LOW)


def store_with_report(state: Path, scanned: ScanTarget | None) -> Store:
    store = Store.open(state)
    store.put_meta("report", json.dumps(replace(make_report(), scanned=scanned).to_json()))
    return store


@pytest.mark.parametrize(
    "scanned",
    [
        ScanTarget("not-" + os.uname().nodename, target.here().machine_id, None, "/", True),
        ScanTarget(os.uname().nodename, OTHER_MID, None, "/", True),
        ScanTarget(os.uname().nodename, target.here().machine_id, None, "/srv/snap", False),
        None,
    ],
    ids=["other-host", "other-machine-id", "read-with-root", "not-recorded"],
)
def test_apply_refuses_a_history_of_another_machine_and_runs_nothing(
    tmp_path: Path, scanned: ScanTarget | None
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("drift")
    store = store_with_report(tmp_path / "state", scanned)
    f = low_revert(victim)
    assert remediate.eligible(f)
    assert remediate.refusal(store) is not None
    with pytest.raises(NixdriftError, match="not remediated on this machine"):
        remediate.apply(store, f)
    assert victim.read_text() == "drift"
    assert store.remediations() == []
    store.close()


def test_a_history_without_a_report_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    assert "holds no report" in (remediate.refusal(store) or "")
    store.close()


HERE = target.here()


@pytest.mark.skipif(target.refusal(HERE, HERE) is not None, reason="this machine cannot be identified")
def test_apply_runs_when_the_history_is_of_this_machines_live_root(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("drift")
    store = store_with_report(tmp_path / "state", HERE)
    assert remediate.refusal(store) is None
    outcome = remediate.apply(store, low_revert(victim))
    assert outcome.returncode == 0
    assert not victim.exists()
    assert [r.finding_id for r in store.remediations()] == ["etc/victim"]
    store.close()


def test_auto_remediation_skips_a_history_of_another_machine_and_runs_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from nixdrift.config import Config
    from nixdrift.declared.model import DeclaredState
    from nixdrift.models import FlakeInfo
    from nixdrift.pipeline import ScanOptions
    from nixdrift.service.worker import Worker
    from nixdrift.sinks.journald import JournalSink

    victim = tmp_path / "victim"
    victim.write_text("drift")
    other = ScanTarget("not-" + os.uname().nodename, OTHER_MID, None, "/", True)
    store = store_with_report(tmp_path / "state", other)
    store.appear(low_revert(victim))
    worker = Worker(
        Config(auto_remediate=True),
        ScanOptions(flake=str(tmp_path), host="web1"),
        tmp_path / "state",
        store,
        JournalSink(path=str(tmp_path / "no-journal")),
        requeue=lambda job: None,
    )
    assert [f.id for f in worker.tracker.active.values() if remediate.eligible(f)] == ["etc/victim"]
    worker._remediate(DeclaredState.from_json("web1", FlakeInfo(str(tmp_path)), {}))
    assert victim.read_text() == "drift"
    assert store.remediations() == []
    assert "auto-remediation skipped: the report was made for host" in caplog.text
    store.close()
