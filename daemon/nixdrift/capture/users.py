"""Live users and groups: the account databases below the root and NixOS's allocation records.

/etc/shadow is read only to learn whether each account has a password (see accounts.PasswordState);
a snapshot carries it with the hashes redacted. When shadow cannot be read (not root), passwords
are not compared and the section says why in its problems.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from nixdrift.capture import accounts
from nixdrift.capture.accounts import GroupEntry, PasswdEntry, PasswordState
from nixdrift.capture.parsed import reason
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Category, Section
from nixdrift.rootfs import Root

SNAPSHOT_PATHS: tuple[str, ...] = (
    accounts.PASSWD,
    accounts.GROUP,
    accounts.SHADOW,  # the snapshot redacts its hashes
    accounts.UID_MAP,
    accounts.GID_MAP,
    accounts.DECLARATIVE_USERS,
    accounts.DECLARATIVE_GROUPS,
)

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class UsersLive:
    users: Mapping[str, PasswdEntry]
    groups: Mapping[str, GroupEntry]
    passwords: Mapping[str, PasswordState] | None  # None: shadow could not be read
    uid_map: Mapping[str, int] = field(default_factory=dict)
    gid_map: Mapping[str, int] = field(default_factory=dict)
    declarative_users: frozenset[str] = frozenset()
    declarative_groups: frozenset[str] = frozenset()
    # gid -> group names in /etc/group order, built once: comparing must stay linear in the file's size
    by_gid: Mapping[int, tuple[str, ...]] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[int, list[str]] = {}
        for group in self.groups.values():
            index.setdefault(group.gid, []).append(group.name)
        object.__setattr__(self, "by_gid", {gid: tuple(names) for gid, names in index.items()})


def _read(root: Root, path: str, problems: list[str]) -> str | None:
    """The file's text, None when absent; an unreadable file is a problem, not an error."""
    try:
        return root.read_text(path)
    except FileNotFoundError:
        return None
    except OSError as exc:  # refused too: a FIFO, a device, larger than the read limit, outside the root
        problems.append(f"{path}: cannot read: {reason(exc)}")
        return None


def _parsed(
    root: Root,
    path: str,
    parser: Callable[[str, str], tuple[tuple[R, ...], tuple[str, ...]]],
    problems: list[str],
) -> tuple[R, ...] | None:
    text = _read(root, path, problems)
    if text is None:
        return None
    records, bad = parser(text, path)
    problems.extend(bad)
    return records


def capture(root: Root, declared: DeclaredState) -> Section[UsersLive]:
    problems: list[str] = []
    passwd = _parsed(root, accounts.PASSWD, accounts.parse_passwd, problems)
    group = _parsed(root, accounts.GROUP, accounts.parse_group, problems)
    if passwd is None or group is None:
        missing = accounts.PASSWD if passwd is None else accounts.GROUP
        prefix = f"{missing}: cannot read: "
        why = next((": " + p[len(prefix) :] for p in problems if p.startswith(prefix)), "")
        return Section(Category.USERS, None, unavailable=f"{missing} cannot be read{why}", problems=tuple(problems))
    shadow = _parsed(root, accounts.SHADOW, accounts.parse_shadow, problems)
    if shadow is None:
        problems.append(f"{accounts.SHADOW}: not available, passwords are not compared")
    uid_map = _parsed(root, accounts.UID_MAP, accounts.parse_id_map, problems) or ()
    gid_map = _parsed(root, accounts.GID_MAP, accounts.parse_id_map, problems) or ()
    decl_users = _parsed(root, accounts.DECLARATIVE_USERS, accounts.parse_names, problems) or ()
    decl_groups = _parsed(root, accounts.DECLARATIVE_GROUPS, accounts.parse_names, problems) or ()
    live = UsersLive(
        users={u.name: u for u in passwd},
        groups={g.name: g for g in group},
        passwords=None if shadow is None else {s.name: s.password for s in shadow},
        uid_map={a.name: a.id for a in uid_map},
        gid_map={a.name: a.id for a in gid_map},
        declarative_users=frozenset(decl_users),
        declarative_groups=frozenset(decl_groups),
    )
    return Section(Category.USERS, live, problems=tuple(problems))
