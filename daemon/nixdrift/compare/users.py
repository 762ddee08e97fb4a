"""Users and groups: /etc/passwd, /etc/group and /etc/shadow against users.users and users.groups.

Expected ids are the declared ones, else the ids NixOS allocated and recorded in
/var/lib/nixos/{uid,gid}-map (an undeclared id is allocated once and kept). Declared membership of
a group is its `members` plus every user listing it in `extraGroups`, which is what NixOS writes
into the fourth field of /etc/group; a user's primary group is never listed there, so a (group,
user) pair where the group is the user's primary group on either side is left to the user
comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from nixdrift import layout
from nixdrift.compare.common import finding, nix_attr, printable
from nixdrift.compare.common import nix_str as _raw_nix_str
from nixdrift.compare.common import sh as command
from nixdrift.declared.model import DeclaredState, DeclaredUser
from nixdrift.live.users import GroupEntry, PasswdEntry, UsersLive
from nixdrift.models import Category, Finding, Kind, Section

U = Category.USERS

# Groups whose members can become root or read every secret; a new member is critical.
ADMIN_GROUPS = frozenset(
    {
        "wheel",  # sudo and polkit admin rules on NixOS
        "sudo",  # the same on hosts carrying Debian-style sudoers
        "root",  # gid 0 owns root-only files
        "adm",  # reads system logs, which leak tokens and passwords
        "docker",  # the docker socket runs any container as root
        "libvirtd",  # libvirt's socket starts VMs with host devices
        "lxd",  # same as docker for LXD
        "disk",  # raw block devices: read or write any file
        "shadow",  # reads /etc/shadow hashes
    }
)

PASSWD_PATH = "/etc/passwd"
GROUP_PATH = "/etc/group"
SHADOW_PATH = "/etc/shadow"


def compare(declared: DeclaredState, live: Section[UsersLive]) -> tuple[Finding, ...]:
    data = live.data
    if data is None:
        return ()
    want = layout.declared_layout(declared.layout)
    found = (
        *_layout(want, data),
        *_users(declared, data),
        *_groups(declared, data),
        *_members(declared, data),
        *_passwords(declared, data),
    )
    return tuple(_for_backend(want, found, declared.mutable_users))


def _layout(want: layout.Layout, data: UsersLive) -> Iterator[Finding]:
    why = layout.accounts_mismatch(want, data.backend)
    if why is None:
        return
    live = data.live_accounts
    yield finding(
        rule_name="layout-mismatch",
        id="users/layout",
        category=U,
        subject="accounts",
        kind=Kind.CHANGED,
        expected=want.accounts.value,
        actual=live.value if live is not None else "unknown",
        message=why,
        reason="the accounts backend is chosen by the flake: nixos-rebuild switch",
        evidence={"path": PASSWD_PATH},
    )


# What makes the account files on each backend, for the fix of a finding that a shadow-utils
# command would revert on a classic host.
_BACKEND_REVERT = {
    layout.AccountsLayout.USERBORN: "userborn rewrites the account files from the flake at boot and on switch",
    layout.AccountsLayout.SYSUSERS: "systemd-sysusers creates the declared accounts at boot and on switch",
}


def _for_backend(want: layout.Layout, found: Iterable[Finding], mutable_users: bool) -> Iterator[Finding]:
    """Fixes that fit the backend: on a read-only /etc no shadow-utils command can run (they write
    lock files and temporaries in /etc), nor where userborn or sysusers bind-mount the account files
    read-only (users.mutableUsers = false): the revert is then the flake's own, nixos-rebuild."""
    read_only_files = want.accounts is not layout.AccountsLayout.PERL and not mutable_users
    for f in found:
        if (want.immutable_etc or read_only_files) and f.fix.command:
            why = _BACKEND_REVERT.get(want.accounts, "the account files are made from the flake")
            where = (
                "/etc is read-only here"
                if want.immutable_etc
                else "the account files are bind-mounted read-only (users.mutableUsers = false)"
            )
            reason = f"{where}: {why} (nixos-rebuild switch)"
            yield f.with_(fix=replace(f.fix, command="", safe=False, reason=reason))
        else:
            yield f


def nix_str(text: str) -> str:
    """A Nix string naming exactly this host text (odd bytes are shown escaped: a .nix file is text)."""
    return _raw_nix_str(text)


def _nix_attr(name: str) -> str:
    return nix_attr(name)


def _group_name_of(data: UsersLive, gid: int) -> str | None:
    """The first group with this gid, as getgrgid(3) finds it."""
    names = data.by_gid.get(gid)
    return names[0] if names else None


def _expected_gid(declared: DeclaredState, data: UsersLive, group: str) -> int | None:
    if group.isdigit():
        return int(group)
    decl = declared.groups.get(group)
    if decl is not None and decl.gid is not None:
        return decl.gid
    if group in data.gid_map:
        return data.gid_map[group]
    live = data.groups.get(group)
    return live.gid if live is not None else None


def _expected_uid(data: UsersLive, user: DeclaredUser) -> int | None:
    return user.uid if user.uid is not None else data.uid_map.get(user.name)


def _gid_label(data: UsersLive, gid: int) -> str:
    name = _group_name_of(data, gid)
    return f"{printable(name)} ({gid})" if name is not None else str(gid)


# --- users -------------------------------------------------------------------------------------


def _users(declared: DeclaredState, data: UsersLive) -> Iterator[Finding]:
    for name, entry in sorted(data.users.items()):
        user = declared.users.get(name)
        if user is None:
            yield _user_unmanaged(data, entry)
        else:
            yield from _user_changed(declared, data, user, entry)
    for name in sorted(set(declared.users) - set(data.users)):
        yield _user_missing(declared.users[name])


def _user_unmanaged(data: UsersLive, entry: PasswdEntry) -> Finding:
    name = entry.name
    group = _group_name_of(data, entry.gid)
    kind_line = "isSystemUser = true;" if entry.uid < 1000 else "isNormalUser = true;"
    group_line = f" group = {nix_str(group)};" if group is not None else ""
    nix = (
        f"users.users.{_nix_attr(name)} = {{ {kind_line} uid = {entry.uid};{group_line}"
        f" home = {nix_str(entry.home)}; shell = {nix_str(entry.shell)}; }};"
    )
    before = " (it was declared before and not removed)" if name in data.declarative_users else ""
    admin = group in ADMIN_GROUPS
    return finding(
        rule_name="wheel-member" if admin else "user-unmanaged",
        id=f"users/user/{printable(name)}",
        category=U,
        subject=printable(name),
        kind=Kind.UNMANAGED,
        expected="absent",
        actual=f"uid {entry.uid}, group {_gid_label(data, entry.gid)}",
        message=f"user {printable(name)} exists but is not declared{before}"
        + (f"; its primary group {printable(group or '')} is administrative" if admin else ""),
        nix=nix,
        command=command("userdel", name),
        evidence={"path": PASSWD_PATH, "user": printable(name)},
    )


def _user_missing(user: DeclaredUser) -> Finding:
    name = user.name
    return finding(
        rule_name="user-missing",
        id=f"users/user/{printable(name)}",
        category=U,
        subject=printable(name),
        kind=Kind.MISSING,
        expected="present",
        actual="absent",
        message=f"declared user {printable(name)} does not exist",
        nix=f"# remove users.users.{_nix_attr(name)} from the configuration",
        reason="activation recreates it: nixos-rebuild switch",
        evidence={"path": PASSWD_PATH, "user": printable(name)},
    )


def _user_changed(
    declared: DeclaredState, data: UsersLive, user: DeclaredUser, entry: PasswdEntry
) -> Iterator[Finding]:
    name = user.name
    uid = _expected_uid(data, user)
    if uid is not None and uid != entry.uid:
        yield _user_aspect(name, "uid", str(uid), str(entry.uid), f"uid = {entry.uid};", ("-u", str(uid)))
    gid = _expected_gid(declared, data, user.group) if user.group else None
    if gid is not None and gid != entry.gid:
        live_group = _group_name_of(data, entry.gid)
        admin = live_group in ADMIN_GROUPS and user.group not in ADMIN_GROUPS
        yield _user_aspect(
            name,
            "group",
            _gid_label(data, gid),
            _gid_label(data, entry.gid),
            f"group = {nix_str(live_group or str(entry.gid))};",
            ("-g", str(gid)),
            rule_name="wheel-member" if admin else "user-changed",
        )
    if user.home and user.home != entry.home:
        yield _user_aspect(name, "home", user.home, entry.home, f"home = {nix_str(entry.home)};", ("-d", user.home))
    if user.shell and user.shell != entry.shell:
        yield _user_aspect(
            name, "shell", user.shell, entry.shell, f"shell = {nix_str(entry.shell)};", ("-s", user.shell)
        )


def _user_aspect(
    name: str,
    aspect: str,
    expected: str,
    actual: str,
    nix_value: str,
    usermod: tuple[str, str],
    rule_name: str = "user-changed",
) -> Finding:
    return finding(
        rule_name=rule_name,
        id=f"users/user/{printable(name)}/{aspect}",
        category=U,
        subject=printable(name),
        kind=Kind.CHANGED,
        expected=printable(expected),
        actual=printable(actual),
        message=f"user {printable(name)}: {aspect} is {printable(actual)}, declared {printable(expected)}",
        nix=f"users.users.{_nix_attr(name)}.{nix_value}",
        command=command("usermod", *usermod, name),
        evidence={"path": PASSWD_PATH, "user": printable(name)},
    )


# --- groups ------------------------------------------------------------------------------------


def _groups(declared: DeclaredState, data: UsersLive) -> Iterator[Finding]:
    for name, entry in sorted(data.groups.items()):
        if name not in declared.groups:
            yield _group_unmanaged(data, entry)
            continue
        gid = _expected_gid(declared, data, name)
        if gid is not None and gid != entry.gid:
            yield finding(
                rule_name="group-changed",
                id=f"users/group/{printable(name)}/gid",
                category=U,
                subject=printable(name),
                kind=Kind.CHANGED,
                expected=str(gid),
                actual=str(entry.gid),
                message=f"group {printable(name)}: gid is {entry.gid}, declared {gid}",
                nix=f"users.groups.{_nix_attr(name)}.gid = {entry.gid};",
                command=command("groupmod", "-g", str(gid), name),
                evidence={"path": GROUP_PATH, "group": printable(name)},
            )
    for name in sorted(set(declared.groups) - set(data.groups)):
        yield finding(
            rule_name="group-missing",
            id=f"users/group/{printable(name)}",
            category=U,
            subject=printable(name),
            kind=Kind.MISSING,
            expected="present",
            actual="absent",
            message=f"declared group {printable(name)} does not exist",
            nix=f"# remove users.groups.{_nix_attr(name)} from the configuration",
            reason="activation recreates it: nixos-rebuild switch",
            evidence={"path": GROUP_PATH, "group": printable(name)},
        )


def _group_unmanaged(data: UsersLive, entry: GroupEntry) -> Finding:
    name = entry.name
    before = " (it was declared before and not removed)" if name in data.declarative_groups else ""
    return finding(
        rule_name="group-unmanaged",
        id=f"users/group/{printable(name)}",
        category=U,
        subject=printable(name),
        kind=Kind.UNMANAGED,
        expected="absent",
        actual=f"gid {entry.gid}",
        message=f"group {printable(name)} exists but is not declared{before}",
        nix=f"users.groups.{_nix_attr(name)} = {{ gid = {entry.gid}; }};",
        command=command("groupdel", name),
        evidence={"path": GROUP_PATH, "group": printable(name)},
    )


def declared_members(declared: DeclaredState) -> dict[str, frozenset[str]]:
    """group -> users NixOS lists in its member field: `members` plus `extraGroups`."""
    members: dict[str, set[str]] = {g.name: set(g.members) for g in declared.groups.values()}
    for user in declared.users.values():
        for group in user.extra_groups:
            members.setdefault(group, set()).add(user.name)
    return {g: frozenset(m) for g, m in members.items()}


def _primary(declared: DeclaredState, data: UsersLive, user: str) -> frozenset[str]:
    """The user's primary group names, declared and live (never listed in /etc/group)."""
    names: set[str] = set()
    decl = declared.users.get(user)
    if decl is not None and decl.group:
        names.add(decl.group)
    entry = data.users.get(user)
    if entry is not None:
        names.update(data.by_gid.get(entry.gid, ()))
    return frozenset(names)


def _members(declared: DeclaredState, data: UsersLive) -> Iterator[Finding]:
    wanted = declared_members(declared)
    for group, entry in sorted(data.groups.items()):
        live = frozenset(entry.members)
        decl = wanted.get(group, frozenset())
        for user in sorted(live - decl):
            if group not in _primary(declared, data, user):
                yield _member(group, user, added=True)
        for user in sorted(decl - live):
            user_gone = user in declared.users and user not in data.users
            if not user_gone and group not in _primary(declared, data, user):
                yield _member(group, user, added=False)


def _member(group: str, user: str, *, added: bool) -> Finding:
    g, u = printable(group), printable(user)
    admin = added and group in ADMIN_GROUPS
    if added:
        message = f"{u} is a member of {g} but the flake does not declare it"
        nix = f"users.users.{_nix_attr(user)}.extraGroups = [ {nix_str(group)} ];"
        revert = command("gpasswd", "-d", user, group)
    else:
        message = f"{u} is declared a member of {g} but is not"
        nix = f"# remove {nix_str(group)} from users.users.{_nix_attr(user)}.extraGroups"
        revert = command("gpasswd", "-a", user, group)
    if admin:
        message += " (administrative group: can become root)"
    return finding(
        rule_name="wheel-member" if admin else "group-member",
        id=f"users/group/{g}/member/{u}",
        category=U,
        subject=g,
        kind=Kind.UNMANAGED if added else Kind.MISSING,
        expected="not a member" if added else "member",
        actual="member" if added else "not a member",
        message=message,
        nix=nix,
        command=revert,
        evidence={"path": GROUP_PATH, "group": g, "user": u},
    )


# --- passwords ---------------------------------------------------------------------------------


def _passwords(declared: DeclaredState, data: UsersLive) -> Iterator[Finding]:
    """Presence only. With mutableUsers a password set with `passwd` is expected, so no finding."""
    if data.passwords is None or declared.mutable_users:
        return
    for name, user in sorted(declared.users.items()):
        state = data.passwords.get(name)
        if state is None or name not in data.users or state.has_password == user.has_password:
            continue
        expected = "set" if user.has_password else "none"
        yield finding(
            rule_name="password-changed",
            id=f"users/user/{printable(name)}/password",
            category=U,
            subject=printable(name),
            kind=Kind.CHANGED,
            expected=expected,
            actual=state.value,
            message=f"user {printable(name)}: password is {state.value}, declared {expected}",
            nix=f"users.users.{_nix_attr(name)}.hashedPasswordFile = {nix_str('/run/secrets/' + name)};"
            if state.has_password
            else f"users.users.{_nix_attr(name)}.hashedPassword = null;",
            command=command("passwd", "-l", name) if state.has_password else "",
            reason="" if state.has_password else "set the declared password with nixos-rebuild switch",
            evidence={"path": SHADOW_PATH, "user": printable(name)},
        )
