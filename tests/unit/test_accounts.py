"""Parsers of passwd, group, shadow and NixOS's /var/lib/nixos records: examples and hypothesis."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from nixdrift.capture.accounts import (
    GroupEntry,
    IdAllocation,
    PasswdEntry,
    PasswordState,
    ShadowEntry,
    parse_group,
    parse_id_map,
    parse_names,
    parse_passwd,
    parse_shadow,
)

HASH = "$6$saltsalt$Xq7wXcBLk3mJ0vJ8mQkE0t1fV0YwJ.abcdefghijklmnop"

any_text = st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", errors="surrogateescape")))
field = st.text(alphabet=st.characters(blacklist_characters=":\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"))
name = field.filter(lambda s: bool(s.strip()) and s[0] not in "+-" and "," not in s)


def test_passwd_as_nixos_writes_it() -> None:
    text = (
        "root:x:0:0:System administrator:/root:/run/current-system/sw/bin/bash\n"
        "alice:x:1000:100::/home/alice:/run/current-system/sw/bin/zsh\n"
    )
    users, problems = parse_passwd(text)
    assert problems == ()
    assert users[1] == PasswdEntry("alice", 1000, 100, "", "/home/alice", "/run/current-system/sw/bin/zsh")


def test_passwd_bad_lines_are_problems_and_the_rest_is_kept() -> None:
    text = "root:x:0:0::/root:/bin/sh\nbroken line\nbob:x:abc:100::/home/bob:/bin/sh\n+nis\n\nroot:x:5:5::/:/bin/sh\n"
    users, problems = parse_passwd(text)
    assert [u.name for u in users] == ["root"]
    assert problems == (
        "/etc/passwd:2: expected 7 fields, found 1",
        "/etc/passwd:3: bad name, uid or gid in entry 'bob'",
        "/etc/passwd:4: NIS compat entry ignored",
        "/etc/passwd:6: duplicate user 'root' ignored",
    )


def test_group_members_and_empty_member_field() -> None:
    groups, problems = parse_group("wheel:x:1:alice,bob\nusers:x:100:\nbad:x:-1:\n")
    assert groups == (GroupEntry("wheel", 1, ("alice", "bob")), GroupEntry("users", 100, ()))
    assert problems == ("/etc/group:3: bad name or gid in entry 'bad'",)


def test_shadow_keeps_presence_only() -> None:
    text = (
        f"root:!:1::::::\nalice:{HASH}:19000:0:99999:7:::\nbob:!{HASH}:1::::::\n"
        "carol::1::::::\nd:*:1::::::\ne:!!:1:::::\n"
    )
    entries, problems = parse_shadow(text)
    assert problems == ()
    assert entries == (
        ShadowEntry("root", PasswordState.DISABLED),
        ShadowEntry("alice", PasswordState.HASH),
        ShadowEntry("bob", PasswordState.LOCKED),
        ShadowEntry("carol", PasswordState.EMPTY),
        ShadowEntry("d", PasswordState.DISABLED),
        ShadowEntry("e", PasswordState.DISABLED),
    )
    assert HASH not in repr(entries)


def test_shadow_redacted_by_snapshot_still_counts_as_set() -> None:
    entries, _ = parse_shadow("alice:$nixdrift-redacted$:1::::::\nbob:!$nixdrift-redacted$:1::::::\n")
    assert [e.password for e in entries] == [PasswordState.HASH, PasswordState.LOCKED]


def test_id_map_as_update_users_groups_writes_it() -> None:
    allocations, problems = parse_id_map('{"alice":1000,"nixbld1":30001,"odd":true,"neg":-1}')
    assert allocations == (IdAllocation("alice", 1000), IdAllocation("nixbld1", 30001))
    assert problems == ("/var/lib/nixos/uid-map:1: bad id for 'neg'", "/var/lib/nixos/uid-map:1: bad id for 'odd'")


def test_id_map_not_json() -> None:
    assert parse_id_map("{not json", "/var/lib/nixos/gid-map") == (
        (),
        ("/var/lib/nixos/gid-map:1: not JSON: JSONDecodeError",),
    )
    assert parse_id_map("[1, 2]")[1] == ("/var/lib/nixos/uid-map:1: expected a JSON object, found list",)
    assert parse_id_map("") == ((), ())


def test_declarative_names_are_space_separated() -> None:
    assert parse_names("alice bob nixbld1") == (("alice", "bob", "nixbld1"), ())
    assert parse_names("") == ((), ())


# --- hypothesis: never raises, keeps every good line ---------------------------------------------


@given(any_text)
def test_parsers_never_raise(text: str) -> None:
    for parser in (parse_passwd, parse_group, parse_shadow, parse_id_map, parse_names):
        records, problems = parser(text)  # type: ignore[operator]
        assert isinstance(records, tuple)
        assert all(isinstance(p, str) and "\n" not in p for p in problems)


@given(st.lists(st.tuples(name, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), field, field, field)))
def test_passwd_round_trip(rows: list[tuple[str, int, int, str, str, str]]) -> None:
    unique = list({r[0]: r for r in rows}.values())
    text = "".join(f"{n}:x:{u}:{g}:{c}:{h}:{s}\n" for n, u, g, c, h, s in unique)
    users, problems = parse_passwd(text)
    assert problems == ()
    assert users == tuple(PasswdEntry(*r) for r in unique)


@given(st.lists(st.tuples(name, st.integers(0, 2**32 - 1), st.lists(name, max_size=4))), any_text)
def test_group_good_lines_survive_garbage(rows: list[tuple[str, int, list[str]]], junk: str) -> None:
    unique = list({r[0]: r for r in rows}.values())
    good = "".join(f"{n}:x:{g}:{','.join(m)}\n" for n, g, m in unique)
    junk_lines = "".join(line + "\n" for line in junk.splitlines() if line.count(":") != 3)
    groups, _ = parse_group(good + junk_lines)
    assert groups[: len(unique)] == tuple(GroupEntry(n, g, tuple(dict.fromkeys(m))) for n, g, m in unique)


@given(
    st.lists(st.tuples(name.filter(lambda s: "$" not in s), st.text(alphabet="$./0123456789abcdefXYZ", min_size=1))),
    any_text,
)
def test_shadow_problems_never_quote_a_hash(rows: list[tuple[str, str]], junk: str) -> None:
    text = "".join(f"{n}:${h}:1::::::\n" for n, h in rows) + junk
    entries, problems = parse_shadow(text)
    secrets = {"$" + h for _, h in rows if len(h) > 3}
    assert not any(s in p for s in secrets for p in problems)
    assert all(isinstance(e.password, PasswordState) for e in entries)


@given(st.dictionaries(name, st.integers(0, 2**32 - 1)))
def test_id_map_round_trip(mapping: dict[str, int]) -> None:
    allocations, problems = parse_id_map(json.dumps(mapping))
    assert problems == ()
    assert {a.name: a.id for a in allocations} == mapping
