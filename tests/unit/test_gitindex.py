"""The process-free flake identity read from git's index: every change nix would copy changes it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nixdrift.declared import gitindex
from nixdrift.declared.evaluate import flake_info


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}  # fmt: skip
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "flake"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "flake.nix").write_text("{ outputs = _: { }; }\n")
    (repo / "host with space.nix").write_text("{ }\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    return repo


def test_identity_is_stable_and_follows_every_change(repo: Path) -> None:
    seen = {gitindex.identity(repo)}
    assert gitindex.identity(repo) in seen  # nothing changed: same identity
    (repo / "flake.nix").write_text("{ outputs = _: { x = 1; }; }\n")  # an unstaged edit
    seen.add(gitindex.identity(repo))
    git(repo, "add", "flake.nix")  # staged
    staged = gitindex.identity(repo)
    (repo / "new.nix").write_text("{ }\n")  # untracked: nix does not copy it
    assert gitindex.identity(repo) == staged
    git(repo, "add", "new.nix")
    seen.add(gitindex.identity(repo))
    git(repo, "commit", "-qm", "second")  # HEAD moves
    seen.add(gitindex.identity(repo))
    (repo / "host with space.nix").unlink()
    seen.add(gitindex.identity(repo))
    assert len(seen) == 5 and None not in seen


def test_same_size_edit_is_seen_even_within_the_same_second(repo: Path) -> None:
    before = gitindex.identity(repo)
    path = repo / "flake.nix"
    st = path.stat()
    path.write_text("{ outputs = _: { }; }\n".replace("{ }", "[ ]"))  # same length
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    assert path.stat().st_size == st.st_size
    # the index was written after that mtime, so only content can tell: it must be read
    assert gitindex.identity(repo) != before


def test_the_identity_determines_revision_and_dirtiness(repo: Path) -> None:
    info = flake_info(str(repo))
    assert info.revision is not None and not info.dirty
    (repo / "flake.nix").write_text("{ outputs = _: { y = 2; }; }\n")
    assert flake_info(str(repo)).dirty


def test_other_layouts_are_left_to_git(tmp_path: Path, repo: Path) -> None:
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", str(worktree))
    assert (worktree / ".git").is_file()
    assert gitindex.identity(worktree) is None
    assert gitindex.identity(tmp_path / "no-repo") is None
