"""Real `nix eval` of fixture flakes, and the evaluation cache keyed by the flake's identity."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from nixdrift.declared import evaluate, nix
from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost
from nixdrift.models import Finding

pytestmark = pytest.mark.nix


@pytest.fixture
def nix_evals(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Every `nix eval` argv, recorded at the one process seam the evaluator uses."""
    calls: list[list[str]] = []
    real = nix.run  # type: ignore[attr-defined]

    def counting(argv: Sequence[str], **kwargs: Any) -> Any:
        if "eval" in argv:
            calls.append(list(argv))
        return real(argv, **kwargs)

    monkeypatch.setattr(nix, "run", counting)
    yield calls


def test_projection_of_a_fixture_flake(host: HostTree) -> None:
    host.with_user("alice", groups=["wheel", "video"]).with_package("hello")
    host.with_service("nginx", wanted_by=["multi-user.target"]).with_etc_copy("sudoers.d/ops", "x\n", "0440")
    host.with_firewall(tcp=[22, 80], tcp_ranges=[(6000, 6010)]).with_mount("/data", device="/dev/vdb")
    host.with_nameservers("1.1.1.1")
    built = host.build()
    declared = evaluate(str(built.flake), "web1", None)
    assert declared.toplevel == built.toplevel
    assert declared.host_name == "web1" and declared.nameservers == ("1.1.1.1",)
    alice = declared.users["alice"]
    assert alice.is_normal and alice.extra_groups == ("wheel", "video") and alice.home == "/home/alice"
    assert alice.shell == "/run/current-system/sw/bin/bash"
    assert declared.groups["wheel"].gid == 1
    assert {p.pname for p in declared.system_packages} >= {"hello", "bash-interactive"}
    assert declared.units["nginx.service"].wanted_by == ("multi-user.target",)
    assert declared.etc["sudoers.d/ops"].mode == "0440"
    assert declared.etc["motd" if "motd" in declared.etc else "hostname"].source
    assert declared.firewall.allows("tcp", 80) and declared.firewall.allows("tcp", 6005)
    assert not declared.firewall.allows("tcp", 8080)
    assert declared.file_systems["/data"].device == "/dev/vdb"
    assert declared.flake.dirty is False and declared.flake.revision


def test_second_run_does_not_evaluate(
    demo_built: BuiltHost, tmp_path: Path, nix_evals: list[list[str]], scan_host: Callable[..., Any]
) -> None:
    demo_built.add_group_member("wheel", "bob")  # drift, so that the comparison below is not of two empty reports
    demo_built.edit_etc("motd", "edited by hand\n")
    cache = tmp_path / "cache"
    first = scan_host(demo_built, cache)
    assert len(nix_evals) == 1
    assert list(cache.glob("*.json"))
    second = scan_host(demo_built, cache)
    assert len(nix_evals) == 1, "the unchanged flake was evaluated again"
    assert {"users/group/wheel/member/bob", "etc/motd"} <= {f.id for f in first.findings}
    # the cached declaration judges the host exactly as the evaluated one did (scan times aside)
    assert untimed(second.findings) == untimed(first.findings)
    assert second.generations == first.generations and second.categories == first.categories


def untimed(findings: Sequence[Finding]) -> list[Finding]:
    return [f.with_(first_seen="", last_seen="") for f in findings]


def test_a_dirty_edit_is_evaluated_again(demo_built: BuiltHost, tmp_path: Path, nix_evals: list[list[str]]) -> None:
    cache = tmp_path / "cache"
    before = evaluate(str(demo_built.flake), "web1", cache)
    assert len(nix_evals) == 1
    host_nix = demo_built.flake / "host.nix"
    host_nix.write_text(host_nix.read_text().replace('"1.1.1.1"', '"192.0.2.1"'))
    after = evaluate(str(demo_built.flake), "web1", cache)
    assert len(nix_evals) == 2
    assert after.flake.dirty is True and before.flake.dirty is False
    assert after.nameservers[0] == "192.0.2.1"
    evaluate(str(demo_built.flake), "web1", cache)
    assert len(nix_evals) == 2, "the same dirty tree was evaluated twice"


def test_no_cache_always_evaluates(host: HostTree, nix_evals: list[list[str]]) -> None:
    built = host.build()
    evaluate(str(built.flake), "web1", None)
    evaluate(str(built.flake), "web1", None)
    assert len(nix_evals) == 2
