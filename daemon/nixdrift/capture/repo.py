"""The flake's git checkout: uncommitted, untracked and unpushed changes (gitpython).

This is the checkout that was evaluated, on the machine running nixdrift: it is never read below
`--root`. A flake that is not a local path (github:, a registry name) has no checkout to inspect.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nixdrift import scanindex
from nixdrift.capture.needs import FlakeNeeds
from nixdrift.flakeref import FlakeRef
from nixdrift.live.repo import Change, FileChange, LiveRepo
from nixdrift.models import Category, Section
from nixdrift.rootfs import Root, read_regular

SNAPSHOT_PATHS: tuple[str, ...] = ()  # the repository lives where nixdrift runs, not on the host
MAX_FILES = 500  # per list: a checkout with thousands of stray files gets a problem, not thousands of findings


def _changes(repo: Any) -> list[FileChange]:
    by_path: dict[str, FileChange] = {}
    head_valid = repo.head.is_valid()
    if head_valid:
        for diff in repo.head.commit.diff():  # HEAD -> index: what is staged
            path = diff.b_path or diff.a_path
            change = Change.from_git(diff.change_type or "M")
            renamed = diff.a_path if change is Change.RENAMED else ""
            by_path[path] = FileChange(path, change, True, change is not Change.ADDED, renamed)
    else:
        for path, _stage in repo.index.entries:
            by_path[path] = FileChange(path, Change.ADDED, True, False)
    for diff in repo.index.diff(None):  # index -> working tree: what is not staged
        path = diff.a_path or diff.b_path
        if path not in by_path:
            by_path[path] = FileChange(path, Change.from_git(diff.change_type or "M"), False, head_valid)
    return [by_path[p] for p in sorted(by_path)]


def _upstream(repo: Any) -> tuple[str | None, str | None, int, bool]:
    """(branch, upstream, commits ahead, detached HEAD not on any remote branch)."""
    if repo.head.is_detached:
        contained = repo.git.branch("-r", "--contains", "HEAD").strip()
        return None, None, 0, not contained
    branch = repo.active_branch
    tracking = branch.tracking_branch()
    if tracking is None or not repo.head.is_valid():
        return branch.name, None, 0, False
    if not tracking.is_valid():
        return branch.name, tracking.name, sum(1 for _ in repo.iter_commits(branch.path)), False
    ahead = sum(1 for _ in repo.iter_commits(f"{tracking.path}..{branch.path}"))
    return branch.name, tracking.name, ahead, False


def capture(root: Root, declared: FlakeNeeds) -> Section[LiveRepo]:
    reference = declared.flake.reference
    directory = FlakeRef.parse(reference).local_flake_dir()
    if directory is None:
        return Section.missing(Category.REPO, f"the flake {reference!r} is not a local checkout")
    if not directory.is_dir():
        return Section.missing(Category.REPO, f"the flake directory {directory} does not exist here")
    # git runs as processes (gitpython's import too): what they read is recorded instead (_git_inputs)
    with scanindex.vouch_processes(files=_git_config_files()):
        try:
            import git  # imported here: gitpython fails at import time when git is not installed
        except ImportError as exc:
            return Section.missing(Category.REPO, f"gitpython cannot run git: {exc}")
        return _capture(git, directory)


def _git_config_files() -> list[str]:
    """The configuration git reads besides the repository's own (.git/config, in the recorded tree)."""
    home = os.environ.get("HOME", "")
    xdg = os.environ.get("XDG_CONFIG_HOME") or f"{home}/.config"
    files = ["/etc/gitconfig", f"{home}/.gitconfig", f"{xdg}/git/config", f"{xdg}/git/ignore", f"{xdg}/git/attributes"]
    files += [v for k in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM") if (v := os.environ.get(k))]
    return files


def _git_inputs(top: str) -> None:
    """Record the work tree and `.git` (but its objects, named by their hashes) as the scan's inputs;
    a configuration that names further files (an include, an excludes file, a hooks path, an fs
    monitor) makes the scan not indexable."""
    scanindex.vouch_tree(top)
    for path in (*_git_config_files(), f"{top}/.git/config"):
        try:
            text = read_regular(path, 1 << 20).decode("utf-8", "replace").lower()
        except OSError:
            continue
        if any(word in text for word in ("include", "excludesfile", "fsmonitor", "hookspath", "attributesfile")):
            scanindex.taint(f"{path} names files git reads beyond the repository")


def _capture(git: Any, directory: Path) -> Section[LiveRepo]:
    try:
        repo = git.Repo(directory, search_parent_directories=True)
        # read without taking index.lock: never in the way of the operator's own git, and no
        # lock-file events for the daemon's watch on the repository
        repo.git.update_environment(GIT_OPTIONAL_LOCKS="0")
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return Section.missing(Category.REPO, f"the flake directory {directory} is not in a git repository")
    with repo:
        if repo.bare or repo.working_tree_dir is None:
            return Section.missing(Category.REPO, f"{directory} is a bare git repository")
        try:
            changes = _changes(repo)
            untracked = sorted(repo.untracked_files)
            branch, upstream, ahead, detached_unpushed = _upstream(repo)
        except git.GitCommandError as exc:
            return Section.missing(Category.REPO, f"git failed in {directory}: {exc.stderr.strip() or exc}")
        head = repo.head.commit.hexsha if repo.head.is_valid() else None
        top = str(repo.working_tree_dir)
        _git_inputs(top)
    problems = tuple(
        f"{top}: {len(items)} {what} files; only the first {MAX_FILES} are reported"
        for items, what in ((changes, "uncommitted"), (untracked, "untracked"))
        if len(items) > MAX_FILES
    )
    live = LiveRepo(
        top=top,
        flake_dir=str(directory.resolve()),
        branch=branch,
        head=head,
        upstream=upstream,
        ahead=ahead,
        detached_unpushed=detached_unpushed,
        changes=tuple(changes[:MAX_FILES]),
        untracked=tuple(untracked[:MAX_FILES]),
    )
    return Section(Category.REPO, live, problems=problems)
