"""Fail closed: what nobody could judge is `unavailable` in every format and in the exit code, never
"ok"; an unreadable generation link is one line; a root that is not NixOS is refused."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from factories import port_opened
from nixdrift import pipeline
from nixdrift.categories import TABLE
from nixdrift.declared.model import DeclaredState
from nixdrift.errors import NixdriftError
from nixdrift.models import Category, Finding, FlakeInfo, Report, Section, Severity
from nixdrift.nixos_root import is_nixos, markers, require_nixos
from nixdrift.policy import Policy
from nixdrift.report import render
from nixdrift.report.metrics import metrics_json, render_prometheus
from nixdrift.rootfs import Root
from nixdrift.sinks.kube import policy_report

DECLARED = DeclaredState.from_json("web1", FlakeInfo("git+file:///etc/nixos"), {})
BROKEN = "network comparator failed: RuntimeError: boom at line 3"


def _broken(_declared: DeclaredState, _section: Section[Any]) -> tuple[Finding, ...]:
    raise RuntimeError("boom at line 3")


def _port(_declared: DeclaredState, _section: Section[Any]) -> tuple[Finding, ...]:
    return (port_opened(8080),)


def _nothing(_declared: DeclaredState, _section: Section[Any]) -> tuple[Finding, ...]:
    return ()


def _with_comparators(monkeypatch: pytest.MonkeyPatch, **comparators: Any) -> None:
    """The test seam: the category table's comparator of a category, replaced for one test."""
    for name, fn in comparators.items():
        category = Category(name.replace("_", "-"))
        monkeypatch.setitem(TABLE, category, dataclasses.replace(TABLE[category], comparator=fn))


def _report(tmp_path: Path, threshold: Severity = Severity.MEDIUM) -> Report:
    sections: dict[Category, Section[Any]] = {
        Category.NETWORK: Section(Category.NETWORK, data=object(), problems=("resolv.conf:4: bad line",)),
        Category.FIREWALL: Section(Category.FIREWALL, data=object()),
        Category.ETC: Section(Category.ETC, data=object()),
    }
    compared = pipeline.compare_sections(DECLARED, sections)
    policy = Policy(threshold=threshold)
    return pipeline.build_report(DECLARED, Root.of(tmp_path), compared.sections, compared.findings, policy)


def test_a_raising_comparator_makes_its_category_unavailable_and_the_rest_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_comparators(monkeypatch, network=_broken, firewall=_port, etc=_nothing)
    report = _report(tmp_path, threshold=Severity.CRITICAL)
    assert report.categories == {
        Category.NETWORK: f"unavailable: {BROKEN}",
        Category.FIREWALL: "drift",
        Category.ETC: "ok",
    }
    assert [f.id for f in report.findings] == ["firewall/tcp/8080/open"]
    # the section's own problems stay, and one line says why the category is unavailable
    assert report.problems == (
        "network: resolv.conf:4: bad line",
        "network: comparator failed: RuntimeError: boom at line 3",
    )
    assert pipeline.exit_code(report) == 1  # drift was found anyway


def test_a_raising_comparator_shows_in_every_format_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_comparators(monkeypatch, network=_broken, firewall=_nothing, etc=_nothing)
    report = _report(tmp_path)
    assert pipeline.exit_code(report) == 2  # nothing found, but network was not judged: never 0
    assert pipeline.unavailable(report) == (Category.NETWORK,)
    text = render(report, "text")
    lines = {
        line.split()[0]: line.split(None, 1)[1]
        for line in text.splitlines()
        if line.startswith("  ") and " " in line.strip()
    }
    assert lines["network"] == f"unavailable: {BROKEN}"
    assert "network: comparator failed: RuntimeError: boom at line 3" in text
    data = json.loads(render(report, "json"))
    assert data["categories"]["network"] == f"unavailable: {BROKEN}"
    assert "network: comparator failed: RuntimeError: boom at line 3" in data["problems"]
    markdown = render(report, "markdown")
    assert BROKEN in markdown and "1 category could not be scanned" in markdown
    policy = yaml.safe_load(yaml.safe_dump(policy_report(report)))
    assert policy["summary"]["error"] == 1 and policy["summary"]["pass"] == 2
    assert policy["metadata"]["annotations"]["nixdrift/unavailable"] == f"network: {BROKEN}"
    prom = render_prometheus(report).splitlines()
    assert 'nixdrift_category_unavailable{category="network"} 1' in prom
    assert 'nixdrift_category_unavailable{category="etc"} 0' in prom
    assert metrics_json(report)["unavailable"] == ["network"]


def test_a_clean_complete_scan_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _with_comparators(monkeypatch, network=_nothing, firewall=_nothing, etc=_nothing)
    report = _report(tmp_path)
    assert set(report.categories.values()) == {"ok"}
    assert pipeline.exit_code(report) == 0


def test_an_unavailable_section_exits_2_unless_drift_is_at_the_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_comparators(monkeypatch, firewall=_port)
    sections: dict[Category, Section[Any]] = {
        Category.SERVICES: Section.missing(Category.SERVICES, "no units.json"),
        Category.FIREWALL: Section(Category.FIREWALL, data=object()),
    }
    compared = pipeline.compare_sections(DECLARED, sections)
    above = pipeline.build_report(
        DECLARED, Root.of(tmp_path), compared.sections, compared.findings, Policy(threshold=Severity.CRITICAL)
    )
    assert pipeline.exit_code(above) == 1  # the opened port is critical: drift, whatever else is unknown
    # with that drift accepted nothing counts, but services was not judged: 2, not 0
    accepted = dataclasses.replace(above, findings=tuple(f.with_(accepted=True) for f in above.findings))
    assert pipeline.exit_code(accepted) == 2


def _loop(root: Path, host_path: str) -> None:
    link = root / host_path.lstrip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(host_path)  # ln -s /run/current-system ROOT/run/current-system


def test_generations_of_a_link_loop_are_unknown_not_a_crash(tmp_path: Path) -> None:
    _loop(tmp_path, "/run/current-system")
    _loop(tmp_path, "/run/booted-system")
    declared = DeclaredState.from_json("web1", FlakeInfo("x"), {"toplevel": "/nix/store/" + "a" * 32 + "-sys"})
    generations = pipeline.generations_of(Root.of(tmp_path), declared)
    assert (generations.current, generations.booted) == (None, None)
    assert generations.declared == declared.toplevel


@pytest.mark.parametrize("link", ["/run/current-system", "/run/booted-system", "/nix/var/nix/profiles/system"])
def test_a_generation_link_loop_makes_generation_unavailable(tmp_path: Path, link: str) -> None:
    store_path = "/nix/store/" + "b" * 32 + "-nixos-system-web1"
    (tmp_path / "nix/store" / store_path.rsplit("/", 1)[1]).mkdir(parents=True)
    for good in ("/run/current-system", "/run/booted-system"):
        (tmp_path / good.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / good.lstrip("/")).symlink_to(store_path)
    _loop(tmp_path, link)
    declared = DeclaredState.from_json("web1", FlakeInfo("x"), {"toplevel": store_path})
    section = TABLE[Category.GENERATION].collector(Root.of(tmp_path), declared)
    assert section.data is None
    assert section.unavailable == f"a system generation link cannot be read: too many levels of symbolic links: {link}"


def test_markers_of_a_nixos_root(tmp_path: Path) -> None:
    assert not is_nixos(Root.of(tmp_path))
    (tmp_path / "run").mkdir()
    os.symlink("/nix/store/x-nixos-system", tmp_path / "run/current-system")  # dangling: still a marker
    assert markers(Root.of(tmp_path)) == ("/run/current-system",)


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("etc/NIXOS", ""),
        ("etc/os-release", 'NAME=NixOS\nID=nixos\nVERSION_ID="24.11"\n'),
        ("etc/os-release", "ID='nixos'\n"),
    ],
)
def test_one_marker_is_enough(tmp_path: Path, path: str, content: str) -> None:
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(content)
    require_nixos(Root.of(tmp_path))


def test_a_debian_root_is_refused_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12"\nID=debian\n')
    (tmp_path / "etc/debian_version").write_text("12.7\n")
    with pytest.raises(NixdriftError) as caught:
        require_nixos(Root.of(tmp_path))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path} is not a NixOS system") and "--not-nixos-ok" in message
    assert "\n" not in message
    require_nixos(Root.of(tmp_path), allowed=True)  # --not-nixos-ok


def test_an_os_release_fifo_does_not_hang(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc/os-release")
    assert not is_nixos(Root.of(tmp_path))


def test_in_the_daemon_a_raising_comparator_keeps_the_findings_and_says_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the worker does each scan (capture -> compare_sections -> tracker): a comparator that
    starts raising must not resolve the drift it found before, nor report its category "ok"."""
    from nixdrift.service.history import Store
    from nixdrift.service.tracker import Tracker

    store = Store.open(tmp_path / "state")
    tracker = Tracker(store, Severity.MEDIUM)
    sections: dict[Category, Section[Any]] = {Category.FIREWALL: Section(Category.FIREWALL, data=object())}
    _with_comparators(monkeypatch, firewall=_port)
    first = pipeline.compare_sections(DECLARED, sections)
    assert [f.id for f in tracker.reconcile(first.sections, first.findings).new] == ["firewall/tcp/8080/open"]
    assert tracker.status[Category.FIREWALL] == "drift"

    _with_comparators(monkeypatch, firewall=_broken)
    second = pipeline.compare_sections(DECLARED, sections)
    outcome = tracker.reconcile(second.sections, second.findings)
    assert outcome.resolved == []
    assert list(tracker.active) == ["firewall/tcp/8080/open"]
    assert tracker.status[Category.FIREWALL] == (
        "unavailable: firewall comparator failed: RuntimeError: boom at line 3"
    )
    store.close()
