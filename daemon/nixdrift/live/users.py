"""Accounts as records: passwd and group entries, what shadow says about a password (never the
hash), id allocations, and the users section with the files each accounts backend leaves."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from nixdrift import layout


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str


@dataclass(frozen=True, slots=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]  # the fourth field: supplementary members (primary groups are not listed)


class PasswordState(enum.Enum):
    """What the shadow password field says, without the hash."""

    HASH = "set"  # a usable hash: the account has a password
    LOCKED = "locked"  # `!<hash>`: a hash exists but `passwd -l` disabled it
    DISABLED = "disabled"  # `!`, `!!`, `*` and other non-hashes: no password login
    EMPTY = "empty"  # the field is empty: no password at all

    @property
    def has_password(self) -> bool:
        return self is PasswordState.HASH

    @classmethod
    def of(cls, field: str) -> PasswordState:
        if field == "":
            return cls.EMPTY
        if field.startswith("!"):
            return cls.LOCKED if field.lstrip("!") not in ("", "*", "x") else cls.DISABLED
        # crypt(3) hashes never contain these; `*`, `x` and `*LK*` style markers mean "no password"
        if field.startswith("*") or field in ("x", "NP", "LK"):
            return cls.DISABLED
        return cls.HASH


@dataclass(frozen=True, slots=True)
class ShadowEntry:
    name: str
    password: PasswordState


@dataclass(frozen=True, slots=True)
class IdAllocation:
    name: str
    id: int


@dataclass(frozen=True, slots=True)
class UsersLive:
    users: Mapping[str, PasswdEntry]
    groups: Mapping[str, GroupEntry]
    passwords: Mapping[str, PasswordState] | None  # None: shadow could not be read
    uid_map: Mapping[str, int] = field(default_factory=dict)
    gid_map: Mapping[str, int] = field(default_factory=dict)
    declarative_users: frozenset[str] = frozenset()
    declarative_groups: frozenset[str] = frozenset()
    # the files each accounts backend leaves, for the layout (perl, userborn, sysusers)
    backend: layout.AccountsEvidence = field(default_factory=lambda: layout.AccountsEvidence(False, False, False))
    # gid -> group names in /etc/group order, built once: comparing must stay linear in the file's size
    by_gid: Mapping[int, tuple[str, ...]] = field(init=False, compare=False, repr=False)

    @property
    def live_accounts(self) -> layout.AccountsLayout | None:
        return layout.live_accounts(self.backend)

    def __post_init__(self) -> None:
        index: dict[int, list[str]] = {}
        for group in self.groups.values():
            index.setdefault(group.gid, []).append(group.name)
        object.__setattr__(self, "by_gid", {gid: tuple(names) for gid, names in index.items()})
