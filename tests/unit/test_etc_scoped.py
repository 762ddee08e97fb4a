"""The daemon's path-scoped /etc re-capture (issue 9 follow-up) gives, for the paths an event names,
exactly the findings a full capture gives for them: on real fixture hosts built with nix (classic
/etc, and a real overlayfs /etc), with drift planted by hand the way an operator makes it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from factories import dns_changed, make_report, port_opened
from hostscan import describe
from nixdrift import pipeline
from nixdrift.capture import etc as capture_etc
from nixdrift.capture import etc_paths
from nixdrift.compare import etc as compare_etc
from nixdrift.declared.model import DeclaredState
from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost
from nixdrift.models import Category, Finding
from nixdrift.pipeline import ScanOptions
from nixdrift.rootfs import Root
from nixdrift.service.worker import report_text

pytestmark = [pytest.mark.nix, pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix")]


def test_tops_keep_the_fewest_covering_paths() -> None:
    assert etc_paths.tops(["a/b", "a", "a-b/c", "a-b", "c/d/e", "c/d2"]) == ("a", "a-b", "c/d/e", "c/d2")
    assert etc_paths.tops(["x", ""]) is None


def test_a_directory_that_is_there_is_its_entry_alone_and_what_is_gone_is_everything_below(tmp_path: Path) -> None:
    (tmp_path / "etc" / "d" / "e").mkdir(parents=True)
    (tmp_path / "etc" / "f").write_text("x\n")
    scope = etc_paths.scope_of(Root.of(tmp_path), ["d", "d/e", "d/e/new", "f", "gone", "gone/x", ""])
    assert scope == etc_paths.Scope(deep=frozenset({"d/e/new", "f", "gone"}), shallow=frozenset({"d", "d/e"}))
    assert scope.holds("gone/x/y") and scope.holds("d") and not scope.holds("d/other")
    assert etc_paths.scope_of(Root.of(tmp_path), [""]) is None


@pytest.fixture(params=["classic", "overlay"])
def built(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BuiltHost]:
    if request.param == "overlay" and (os.geteuid() != 0 or shutil.which("mount") is None):
        pytest.skip("an overlay /etc needs root and mount")
    accounts = "perl" if request.param == "classic" else "userborn"
    init = "scripted" if request.param == "classic" else "nixos-init"
    tree = HostTree(tmp_path / "host", name="web1", etc=request.param, accounts=accounts, init=init)
    tree.with_user("alice", groups=["video"])
    tree.with_etc_file("hosts", "127.0.0.1 localhost\n")
    tree.with_etc_file("issue", "Welcome\n")
    tree.with_etc_file("ssh/sshd_config", "PermitRootLogin no\n")
    tree.with_etc_file("ssh/ssh_config", "Host *\n")
    tree.with_etc_file("xdg/a/one.conf", "one\n")
    tree.with_etc_copy("sudoers.d/10-deploy", "alice ALL=(ALL) ALL\n")
    tree.with_etc_copy("motd", "managed motd\n", mode="0644")
    host = tree.build()
    with host.mounted_etc():
        yield host


def declared_of(host: BuiltHost) -> DeclaredState:
    opts = ScanOptions(flake=str(host.flake), host=host.name, root=Root.of(host.root))
    return pipeline.load_declared(opts)


def plant(etc: Path) -> None:
    """Hand-made drift of every shape the comparator knows."""
    (etc / "motd").write_text("edited by hand\n")  # a managed copy's content
    (etc / "sudoers.d" / "10-deploy").chmod(0o644)  # a managed copy's mode (sensitive)
    (etc / "sudoers.d" / "99-evil").write_text("mallory ALL=(ALL) NOPASSWD: ALL\n")  # new, sensitive
    (etc / "hosts").unlink()
    (etc / "hosts").write_text("10.0.0.1 evil\n")  # a managed link replaced by a file
    (etc / "issue").unlink()  # a managed link deleted
    (etc / "extra").mkdir()
    (etc / "extra" / "deep").mkdir()
    (etc / "extra" / "deep" / "file.conf").write_text("new\n")  # a new tree
    shutil.rmtree(etc / "ssh")
    (etc / "ssh").write_text("not a directory\n")  # a directory of managed links replaced by a file
    (etc / "xdg" / "a" / "one.conf").unlink()
    (etc / "xdg" / "a" / "one.conf").symlink_to("/nowhere")  # a managed link pointing elsewhere
    (etc / "unrelated.conf").write_text("outside every scope here\n")


def by_id(findings: tuple[Finding, ...] | list[Finding]) -> dict[str, Finding]:
    return {f.id: f for f in findings}


SCOPES = (
    ["motd"],
    ["sudoers.d/10-deploy", "sudoers.d/99-evil"],
    ["sudoers.d"],
    ["hosts", "issue"],
    ["extra"],
    ["extra/deep/file.conf"],
    ["ssh"],
    ["ssh/sshd_config"],  # below what is no longer a directory: nothing, as the full walk says
    ["xdg/a/one.conf", "nothing-here"],
    ["xdg"],  # a directory that is there: the entry alone (its children have events of their own)
    ["extra", "extra/deep", "extra/deep/file.conf"],  # what watchdog names for a tree made at once
)


def test_scoped_findings_equal_the_full_capture_restricted_to_the_paths(built: BuiltHost) -> None:
    declared = declared_of(built)
    root = Root.of(built.root)
    plant(built.path("/etc"))
    whole = pipeline.compare_sections(declared, {Category.ETC: capture_etc.capture(root, declared)})
    full = by_id(whole.findings)
    # the planted drift is all there (the comparison below compares something)
    for fid in ("etc/motd", "etc/sudoers.d/10-deploy", "etc/sudoers.d/99-evil", "etc/hosts", "etc/issue"):
        assert fid in full, describe(list(full.values()))
    assert "etc/extra/deep/file.conf" in full and "etc/ssh" in full and "etc/xdg/a/one.conf" in full
    for rels in SCOPES:
        scope = etc_paths.scope_of(root, rels)
        assert scope is not None
        section = etc_paths.capture_paths(root, declared, scope)
        scoped = by_id(compare_etc.compare_paths(declared, section, scope.holds))
        shown = scope.shown().holds
        want = {i: f for i, f in full.items() if compare_etc.owned(f, shown)}
        assert want or rels in (["ssh/sshd_config"], ["sudoers.d"], ["xdg"], ["extra"]), rels  # each compares something
        assert scoped == want, (
            f"{rels}:\nscoped:\n{describe(list(scoped.values()))}\nfull:\n{describe(list(want.values()))}"
        )
        assert all(compare_etc.owned(f, shown) for f in scoped.values())
    assert not compare_etc.owned(full["etc/unrelated.conf"], etc_paths.Scope(frozenset({"motd"}), frozenset()).holds)


def test_a_scope_says_nothing_of_what_is_outside_it(built: BuiltHost) -> None:
    declared = declared_of(built)
    root = Root.of(built.root)
    plant(built.path("/etc"))
    scope = etc_paths.scope_of(root, ["motd"])
    assert scope is not None
    section = etc_paths.capture_paths(root, declared, scope)
    assert section.data is not None
    assert set(section.data.entries) == {"motd"}
    assert [f.id for f in compare_etc.compare_paths(declared, section, scope.holds)] == ["etc/motd"]


def test_the_published_report_is_the_same_text_built_one_finding_at_a_time() -> None:
    odd = port_opened(22).with_(message='a "quoted" \\ name: "findings": 0 \udcff', evidence={"path": "/etc/x\ny"})
    for report in (
        make_report(),
        make_report(port_opened(), dns_changed(), odd, problems=['etc: "findings": 0']),
    ):
        assert report_text(report) == json.dumps(report.to_json(), sort_keys=True)
