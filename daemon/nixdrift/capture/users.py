"""Live users and groups: the account databases below the root and NixOS's allocation records.

/etc/shadow is read only to learn whether each account has a password (see accounts.PasswordState);
a snapshot carries it with the hashes redacted. When shadow cannot be read (not root), passwords
are not compared and the section says why in its problems.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from nixdrift import layout
from nixdrift.capture import accounts
from nixdrift.capture.parsed import reason
from nixdrift.live.users import UsersLive
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
    accounts.USERBORN_PREVIOUS,
    accounts.SYSUSERS_CONFIG,
    # on an immutable /etc, /etc/passwd, group and shadow link to these (userborn, sysusers)
    *accounts.IMMUTABLE_ACCOUNT_FILES,
    accounts.SYSUSERS_UIDS,
    accounts.SYSUSERS_GIDS,
)

R = TypeVar("R")


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


def capture(root: Root, declared: object) -> Section[UsersLive]:
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
    uid_map = {a.name: a.id for a in _parsed(root, accounts.UID_MAP, accounts.parse_id_map, problems) or ()}
    gid_map = {a.name: a.id for a in _parsed(root, accounts.GID_MAP, accounts.parse_id_map, problems) or ()}
    decl_users = frozenset(_parsed(root, accounts.DECLARATIVE_USERS, accounts.parse_names, problems) or ())
    decl_groups = frozenset(_parsed(root, accounts.DECLARATIVE_GROUPS, accounts.parse_names, problems) or ())
    backend = layout.AccountsEvidence(
        perl_state=bool(uid_map) or bool(decl_users) or root.exists(accounts.DECLARATIVE_USERS),
        userborn_state=root.open_path(accounts.USERBORN_STATE).is_dir(),
        sysusers_config=root.exists(accounts.SYSUSERS_CONFIG),
    )
    if backend.userborn_state:  # userborn: the names of its previous config are "declared before"
        previous = _read(root, accounts.USERBORN_PREVIOUS, problems)
        if previous is not None:
            (users_before, groups_before), bad = accounts.parse_userborn_config(previous)
            problems.extend(bad)
            decl_users |= frozenset(users_before)
            decl_groups |= frozenset(groups_before)
    if backend.sysusers_config:  # sysusers: the ids it allocated are the owners of its marker files
        uid_map = {**_markers(root, accounts.SYSUSERS_UIDS, owner=True), **uid_map}
        gid_map = {**_markers(root, accounts.SYSUSERS_GIDS, owner=False), **gid_map}
    live = UsersLive(
        users={u.name: u for u in passwd},
        groups={g.name: g for g in group},
        passwords=None if shadow is None else {s.name: s.password for s in shadow},
        uid_map=uid_map,
        gid_map=gid_map,
        declarative_users=decl_users,
        declarative_groups=decl_groups,
        backend=backend,
    )
    return Section(Category.USERS, live, problems=tuple(problems))


def _markers(root: Root, directory: str, *, owner: bool) -> dict[str, int]:
    """sysusers.nix's /var/lib/nixos/{uid,gid}/<name>: name -> the file's owner uid (or gid)."""
    top = root.open_path(directory)
    out: dict[str, int] = {}
    try:
        entries = list(os.scandir(top))
    except OSError:
        return out
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        out[entry.name] = st.st_uid if owner else st.st_gid
    return out
