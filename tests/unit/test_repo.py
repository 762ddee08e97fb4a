"""The config repository, on real git repositories: uncommitted, untracked, unpushed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nixdrift.capture import repo
from nixdrift.compare import repo as c_repo
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Finding, FlakeInfo, Kind, Severity
from nixdrift.rootfs import Root

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(cwd: Path, *args: str) -> str:
    env_args = ["-c", "user.name=Test", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"]
    return subprocess.run(["git", *env_args, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def declared(reference: str) -> DeclaredState:
    return DeclaredState.from_json("web", FlakeInfo(reference=reference), {})


def check(reference: str) -> dict[str, Finding]:
    section = repo.capture(Root.of("/nonexistent-root"), declared(reference))
    assert section.unavailable is None, section.unavailable
    return {f.id: f for f in c_repo.compare(declared(reference), section)}


@pytest.fixture
def flake(tmp_path: Path) -> Path:
    """A committed flake checkout pushed to a bare remote, with a .gitignore."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--bare", str(remote))
    work = tmp_path / "flake"
    work.mkdir()
    git(work, "init")
    (work / "flake.nix").write_text("{ outputs = _: { }; }\n")
    (work / "hosts").mkdir()
    (work / "hosts/web.nix").write_text("{ }\n")
    (work / ".gitignore").write_text("result\n")
    git(work, "add", ".")
    git(work, "commit", "-m", "init")
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "-u", "origin", "main")
    return work


def test_a_clean_pushed_checkout_has_no_findings(flake: Path) -> None:
    (flake / "result").symlink_to("/nix/store")  # ignored: not drift
    assert check(str(flake)) == {}


def test_modified_and_staged_files_are_uncommitted(flake: Path) -> None:
    (flake / "hosts/web.nix").write_text("{ services.nginx.enable = true; }\n")
    (flake / "hosts/db.nix").write_text("{ }\n")
    git(flake, "add", "hosts/db.nix")
    found = check(str(flake))
    assert set(found) == {"repo/hosts/web.nix/uncommitted", "repo/hosts/db.nix/uncommitted"}
    web, db = found["repo/hosts/web.nix/uncommitted"], found["repo/hosts/db.nix/uncommitted"]
    assert (web.severity, web.kind, web.actual) == (Severity.HIGH, Kind.CHANGED, "modified")
    assert web.fix.command == f"git -C {flake} checkout HEAD -- hosts/web.nix"
    assert web.evidence["path"] == str(flake / "hosts/web.nix")
    assert (db.actual, db.kind) == ("added (staged)", Kind.UNMANAGED)
    assert db.fix.command == f"git -C {flake} rm --cached -- hosts/db.nix"
    assert not web.fix.safe and not db.fix.safe


def test_a_deleted_tracked_file_is_uncommitted(flake: Path) -> None:
    (flake / "hosts/web.nix").unlink()
    found = check(str(flake))
    assert found["repo/hosts/web.nix/uncommitted"].actual == "deleted"


def test_untracked_files_are_medium(flake: Path) -> None:
    (flake / "secrets.nix").write_text("{ }\n")
    [f] = check(str(flake)).values()
    assert f.id == "repo/secrets.nix/untracked"
    assert f.severity is Severity.MEDIUM
    assert f.fix.command == f"git -C {flake} clean -f -- secrets.nix"


def test_commits_ahead_of_upstream_are_unpushed(flake: Path) -> None:
    for n in range(2):
        (flake / f"f{n}.nix").write_text("{ }\n")
        git(flake, "add", ".")
        git(flake, "commit", "-m", f"c{n}")
    [f] = check(str(flake)).values()
    assert f.id == "repo/main/unpushed"
    assert f.severity is Severity.LOW
    assert (f.expected, f.actual) == ("0 commits ahead of origin/main", "2 commits ahead")
    assert f.fix.command == f"git -C {flake} push"
    git(flake, "push")
    assert check(str(flake)) == {}


def test_a_branch_without_upstream_says_so(tmp_path: Path) -> None:
    git(tmp_path, "init")
    (tmp_path / "flake.nix").write_text("{ }\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-m", "init")
    [f] = check(str(tmp_path)).values()
    assert f.id == "repo/main/upstream"
    assert f.severity is Severity.LOW
    assert "no upstream" in f.message


def test_a_repository_without_commits_lists_staged_files_only(tmp_path: Path) -> None:
    git(tmp_path, "init")
    (tmp_path / "flake.nix").write_text("{ }\n")
    git(tmp_path, "add", ".")
    assert list(check(str(tmp_path))) == ["repo/flake.nix/uncommitted"]


def test_flake_in_a_subdirectory_and_url_forms(flake: Path) -> None:
    (flake / "hosts/web.nix").write_text("changed\n")
    expected = {"repo/hosts/web.nix/uncommitted"}
    assert set(check(f"git+file://{flake}?dir=hosts")) == expected
    assert set(check(f"git+file:{flake}")) == expected
    assert set(check(f"path:{flake / 'hosts'}")) == expected
    section = repo.capture(Root(), declared(f"git+file://{flake}?dir=hosts"))
    assert section.data is not None
    assert section.data.flake_dir == str(flake / "hosts")


def test_a_detached_head_not_on_any_remote_is_unpushed(flake: Path) -> None:
    (flake / "x.nix").write_text("{ }\n")
    git(flake, "add", ".")
    git(flake, "commit", "-m", "local")
    git(flake, "checkout", "--detach")
    assert list(check(str(flake))) == ["repo/HEAD/unpushed"]
    git(flake, "checkout", "--detach", "origin/main")
    assert check(str(flake)) == {}


@pytest.mark.parametrize("reference", ["github:me/config", "nixpkgs", "https://example.org/f.tar.gz", "flake:x"])
def test_remote_references_have_no_checkout(reference: str) -> None:
    section = repo.capture(Root(), declared(reference))
    assert section.data is None
    assert "not a local checkout" in (section.unavailable or "")


def test_a_directory_outside_git_is_unavailable(tmp_path: Path) -> None:
    section = repo.capture(Root(), declared(str(tmp_path)))
    assert section.data is None
    assert "not in a git repository" in (section.unavailable or "")


def test_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    section = repo.capture(Root(), declared(str(tmp_path / "gone")))
    assert "does not exist" in (section.unavailable or "")


def test_odd_file_names_make_stable_printable_ids(flake: Path) -> None:
    (flake / "new\tline.nix").write_text("{ }\n")
    [f] = check(str(flake)).values()
    assert f.id == "repo/new\\x09line.nix/untracked"


def test_the_repo_is_read_where_nixdrift_runs_not_below_root(flake: Path, tmp_path: Path) -> None:
    (flake / "hosts/web.nix").write_text("changed\n")
    section = repo.capture(Root.of(tmp_path / "some-snapshot"), declared(str(flake)))
    assert [f.id for f in c_repo.compare(declared(str(flake)), section)] == ["repo/hosts/web.nix/uncommitted"]
