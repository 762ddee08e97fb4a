"""The config repository: what the host runs must be committed, tracked and pushed to be reviewable."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from nixdrift.compare.common import finding, printable, sh
from nixdrift.declared.model import DeclaredState
from nixdrift.live.repo import Change, FileChange, LiveRepo
from nixdrift.models import Category, Finding, Kind, Section

CAT = Category.REPO


def _uncommitted(repo: LiveRepo, change: FileChange) -> Finding:
    state = change.change.value + (" (staged)" if change.staged else "")
    if change.renamed_from:
        state += f" from {change.renamed_from}"
    if change.in_head:
        command = sh("git", "-C", repo.top, "checkout", "HEAD", "--", change.path)
        reason = "this discards the uncommitted change; commit it instead to keep it"
    else:
        command = sh("git", "-C", repo.top, "rm", "--cached", "--", change.path)
        reason = "this unstages the new file (it stays on disk); commit it instead to keep it"
    return finding(
        rule_name="repo-uncommitted",
        id=f"repo/{printable(change.path)}/uncommitted",
        category=CAT,
        subject=printable(change.path),
        kind=Kind.CHANGED if change.change is Change.MODIFIED else Kind.UNMANAGED,
        expected="committed",
        actual=printable(state),
        message=f"{printable(change.path)} is {printable(state)} but not committed in {printable(repo.top)}.",
        command=command,
        reason=reason,
        evidence={"path": posixpath.join(repo.top, change.path), "repository": repo.top},
    )


def _untracked(repo: LiveRepo, path: str) -> Finding:
    return finding(
        rule_name="repo-untracked",
        id=f"repo/{printable(path)}/untracked",
        category=CAT,
        subject=printable(path),
        kind=Kind.UNMANAGED,
        expected="tracked or ignored",
        actual="untracked",
        message=f"{printable(path)} is not tracked by git in {printable(repo.top)}: nix does not see it.",
        command=sh("git", "-C", repo.top, "clean", "-f", "--", path),
        reason="this deletes the file; `git add` it (or ignore it) to keep it",
        evidence={"path": posixpath.join(repo.top, path), "repository": repo.top},
    )


def _branch_finding(repo: LiveRepo, id: str, expected: str, actual: str, message: str, command: str = "") -> Finding:
    evidence = {"path": repo.top, "repository": repo.top, "head": repo.head or ""}
    if repo.upstream:
        evidence["upstream"] = repo.upstream
    return finding(
        rule_name="repo-unpushed",
        id=id,
        category=CAT,
        subject=printable(repo.branch or "HEAD"),
        kind=Kind.UNMANAGED,
        expected=expected,
        actual=actual,
        message=message,
        command=command,
        reason="pushing publishes the commits",
        evidence=evidence,
    )


def _unpushed(repo: LiveRepo) -> Finding | None:
    top = printable(repo.top)
    if repo.branch is None:
        if not repo.detached_unpushed:
            return None
        actual = f"detached at {(repo.head or '')[:12]}"
        message = f"HEAD in {top} is detached at a commit that no remote branch contains."
        return _branch_finding(repo, "repo/HEAD/unpushed", "on a remote branch", actual, message)
    branch = printable(repo.branch)
    if repo.head is None:
        return None  # nothing committed yet: the uncommitted files say it all
    if repo.upstream is None:
        message = f"Branch {branch} in {top} has no upstream: its commits exist only here."
        command = sh("git", "-C", repo.top, "push", "--set-upstream", "origin", repo.branch)
        return _branch_finding(repo, f"repo/{branch}/upstream", "an upstream branch", "no upstream", message, command)
    if repo.ahead == 0:
        return None
    upstream = printable(repo.upstream)
    commits = f"{repo.ahead} commit{'s' if repo.ahead != 1 else ''}"
    message = f"Branch {branch} in {top} has {commits} not pushed to {upstream}."
    command = sh("git", "-C", repo.top, "push")
    expected = f"0 commits ahead of {upstream}"
    return _branch_finding(repo, f"repo/{branch}/unpushed", expected, f"{commits} ahead", message, command)


def _all(repo: LiveRepo) -> Iterator[Finding]:
    for change in repo.changes:
        yield _uncommitted(repo, change)
    for path in repo.untracked:
        yield _untracked(repo, path)
    if (unpushed := _unpushed(repo)) is not None:
        yield unpushed


def compare(declared: DeclaredState, live: Section[LiveRepo]) -> tuple[Finding, ...]:
    return tuple(_all(live.data)) if live.data is not None else ()
