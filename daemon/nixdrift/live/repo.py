"""The flake's git checkout as a record: its branch, upstream, changed and untracked files."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Change(enum.Enum):
    MODIFIED = "modified"
    ADDED = "added"
    DELETED = "deleted"
    RENAMED = "renamed"
    TYPE_CHANGED = "type changed"

    @classmethod
    def from_git(cls, letter: str) -> Change:
        return {"A": cls.ADDED, "D": cls.DELETED, "R": cls.RENAMED, "T": cls.TYPE_CHANGED}.get(letter, cls.MODIFIED)


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str  # relative to the repository's top
    change: Change
    staged: bool  # in the index (else only in the working tree)
    in_head: bool  # the path exists in HEAD (checking it out reverts the change)
    renamed_from: str = ""


@dataclass(frozen=True, slots=True)
class LiveRepo:
    top: str
    flake_dir: str
    branch: str | None  # None when HEAD is detached
    head: str | None  # None before the first commit
    upstream: str | None  # e.g. "origin/main"; None when the branch tracks nothing
    ahead: int  # commits on the branch that its upstream lacks
    detached_unpushed: bool  # a detached HEAD that no remote branch contains
    changes: tuple[FileChange, ...]
    untracked: tuple[str, ...]
