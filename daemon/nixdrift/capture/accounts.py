"""Parsers of the account databases: /etc/passwd, /etc/group, /etc/shadow and NixOS's own records
in /var/lib/nixos that update-users-groups.pl writes at activation:

- `uid-map`, `gid-map`: a JSON object, name -> id, of every id NixOS ever allocated (kept after a
  user is removed so that the id is revived, never reused);
- `declarative-users`, `declarative-groups`: the names activation created declaratively, joined by
  single spaces on one line (no newline).

Every parser is pure and total: a bad line becomes a problem `"<file>:<lineno>: <why>"` and the
rest is kept. Shadow hashes are reduced to a PasswordState as the line is read; the hash itself is
never stored, logged or put into a problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from nixdrift.live.users import GroupEntry, IdAllocation, PasswdEntry, PasswordState, ShadowEntry
from nixdrift.text import printable

PASSWD = "/etc/passwd"
GROUP = "/etc/group"
SHADOW = "/etc/shadow"
UID_MAP = "/var/lib/nixos/uid-map"
GID_MAP = "/var/lib/nixos/gid-map"
DECLARATIVE_USERS = "/var/lib/nixos/declarative-users"
DECLARATIVE_GROUPS = "/var/lib/nixos/declarative-groups"
# userborn: the config it last applied (USERBORN_PREVIOUS_CONFIG, with mutable users)
USERBORN_STATE = "/var/lib/userborn"
USERBORN_PREVIOUS = "/var/lib/userborn/previous-userborn.json"
# systemd-sysusers (sysusers.nix): marker files whose owner is the id sysusers allocated
SYSUSERS_CONFIG = "/etc/sysusers.d/00-nixos.conf"
SYSUSERS_UIDS = "/var/lib/nixos/uid"
SYSUSERS_GIDS = "/var/lib/nixos/gid"
# where /etc/passwd, group, shadow (and gshadow) live when /etc is read-only: userborn's default
# passwordFilesLocation, and sysusers.nix's immutablePasswordFilesLocation
IMMUTABLE_ACCOUNT_FILES = (
    "/var/lib/nixos/passwd",
    "/var/lib/nixos/group",
    "/var/lib/nixos/shadow",
    "/var/lib/nixos/etc/passwd",
    "/var/lib/nixos/etc/group",
    "/var/lib/nixos/etc/shadow",
    "/var/lib/nixos/etc/gshadow",
)

_MAX_ID = 2**32 - 1


def _int_id(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= _MAX_ID else None


def _lines(text: str) -> list[tuple[int, str]]:
    """Numbered lines that hold an entry (blank lines are skipped, as glibc does)."""
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _nis(line: str) -> bool:
    return line[0] in "+-"


def _records(text: str, source: str, width: int | None, problems: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each entry of a colon-separated account file.

    NIS compat lines and lines of the wrong width (`width`, or at least a name and one field when
    None) become problems. Problems never quote a line: shadow's hold hashes.
    """
    for n, line in _lines(text):
        fields = line.split(":")
        if _nis(line):
            problems.append(f"{source}:{n}: NIS compat entry ignored")
        elif width is not None and len(fields) != width:
            problems.append(f"{source}:{n}: expected {width} fields, found {len(fields)}")
        elif width is None and (len(fields) < 2 or not fields[0]):
            problems.append(f"{source}:{n}: not an account entry")
        else:
            yield n, fields


def _first(name: str, seen: set[str], where: str, what: str, problems: list[str]) -> bool:
    """The first valid entry of a name counts (as glibc reads them); later ones are problems."""
    if name in seen:
        problems.append(f"{where}: duplicate {what} {printable(name)!r} ignored")
        return False
    seen.add(name)
    return True


def parse_passwd(text: str, source: str = PASSWD) -> tuple[tuple[PasswdEntry, ...], tuple[str, ...]]:
    entries: list[PasswdEntry] = []
    problems: list[str] = []
    seen: set[str] = set()
    for n, fields in _records(text, source, 7, problems):
        name, _, uid_text, gid_text, gecos, home, shell = fields
        uid, gid = _int_id(uid_text), _int_id(gid_text)
        if not name or uid is None or gid is None:
            problems.append(f"{source}:{n}: bad name, uid or gid in entry {printable(name)!r}")
            continue
        if _first(name, seen, f"{source}:{n}", "user", problems):
            entries.append(PasswdEntry(name, uid, gid, gecos, home, shell))
    return tuple(entries), tuple(problems)


def parse_group(text: str, source: str = GROUP) -> tuple[tuple[GroupEntry, ...], tuple[str, ...]]:
    entries: list[GroupEntry] = []
    problems: list[str] = []
    seen: set[str] = set()
    for n, fields in _records(text, source, 4, problems):
        name, _, gid_text, members_text = fields
        gid = _int_id(gid_text)
        if not name or gid is None:
            problems.append(f"{source}:{n}: bad name or gid in entry {printable(name)!r}")
            continue
        if _first(name, seen, f"{source}:{n}", "group", problems):
            members = tuple(dict.fromkeys(m for m in members_text.split(",") if m))
            entries.append(GroupEntry(name, gid, members))
    return tuple(entries), tuple(problems)


def parse_shadow(text: str, source: str = SHADOW) -> tuple[tuple[ShadowEntry, ...], tuple[str, ...]]:
    """Accounts and whether each has a password. Problems never quote a line: it may hold a hash."""
    problems: list[str] = []
    seen: set[str] = set()
    entries = [
        ShadowEntry(f[0], PasswordState.of(f[1]))
        for n, f in _records(text, source, None, problems)
        if _first(f[0], seen, f"{source}:{n}", "account", problems)
    ]
    return tuple(entries), tuple(problems)


def _json_object(text: str, source: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    if not text.strip():
        return {}, ()
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return {}, (f"{source}:1: not JSON: {type(exc).__name__}",)
    if not isinstance(data, dict):
        return {}, (f"{source}:1: expected a JSON object, found {type(data).__name__}",)
    return data, ()


def parse_id_map(text: str, source: str = UID_MAP) -> tuple[tuple[IdAllocation, ...], tuple[str, ...]]:
    """uid-map or gid-map: `{"alice": 1000, ...}` (to_json with canonical keys)."""
    data, problems = _json_object(text, source)
    entries: list[IdAllocation] = []
    bad: list[str] = list(problems)
    for name, value in sorted(data.items()):
        # JSON booleans are ints in Python; an id is never true or false
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_ID and name:
            entries.append(IdAllocation(name, value))
        else:
            bad.append(f"{source}:1: bad id for {printable(name)!r}")
    return tuple(entries), tuple(bad)


def parse_names(text: str, source: str = DECLARATIVE_USERS) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """declarative-users or declarative-groups: names joined by spaces."""
    names = tuple(dict.fromkeys(text.split()))
    bad = [name for name in names if ":" in name]
    problems = tuple(f"{source}:1: bad name {printable(name)!r}" for name in bad)
    return tuple(n for n in names if n not in bad), problems


def parse_userborn_config(
    text: str, source: str = USERBORN_PREVIOUS
) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]]:
    """userborn's JSON config (userborn.nix's `userbornConfig`): the user and group names it manages.
    `{"users": [{"name": ...}, ...], "groups": [{"name": ...}, ...]}`; anything else is a problem."""
    data, problems = _json_object(text, source)
    bad: list[str] = list(problems)
    names: list[tuple[str, ...]] = []
    for key in ("users", "groups"):
        items = data.get(key, [])
        found: list[str] = []
        for n, item in enumerate(items if isinstance(items, list) else (), 1):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name and ":" not in name:
                found.append(name)
            else:
                bad.append(f"{source}:1: {key}[{n}]: no usable name")
        if not isinstance(items, list):
            bad.append(f"{source}:1: {key} is not a list")
        names.append(tuple(dict.fromkeys(found)))
    return (names[0], names[1]), tuple(bad)
