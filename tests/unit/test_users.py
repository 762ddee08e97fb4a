"""Users and groups: a host tree built from a few declarative lines, captured and compared."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nixdrift.capture import users as capture_users
from nixdrift.compare import users as compare_users
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Category, FlakeInfo, Kind, Severity
from nixdrift.rootfs import Root

BASH = "/run/current-system/sw/bin/bash"
NOLOGIN = "/run/current-system/sw/bin/nologin"
HASH = "$6$rounds=5000$abcdefgh$SECRETSECRETSECRETSECRET"


@dataclass
class Host:
    """A NixOS host's account files, as activation writes them for the declared users."""

    root: Path
    mutable: bool = False
    passwd: dict[str, str] = field(default_factory=dict)
    group: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    shadow: dict[str, str] = field(default_factory=dict)
    uid_map: dict[str, int] = field(default_factory=dict)
    gid_map: dict[str, int] = field(default_factory=dict)
    declared_users: dict[str, dict[str, Any]] = field(default_factory=dict)
    declared_groups: dict[str, dict[str, Any]] = field(default_factory=dict)

    def with_group(self, name: str, gid: int, *, declared_gid: bool = True, members: list[str] | None = None) -> Host:
        self.group[name] = (gid, [])
        self.gid_map[name] = gid
        self.declared_groups[name] = {"gid": gid if declared_gid else None, "members": members or []}
        for m in members or []:
            self.group[name][1].append(m)
        return self

    def with_user(
        self,
        name: str,
        uid: int,
        group: str,
        *,
        groups: list[str] = (),  # type: ignore[assignment]
        home: str = "/var/empty",
        shell: str = NOLOGIN,
        password: bool = False,
        declared_uid: bool = True,
    ) -> Host:
        self.passwd[name] = f"{name}:x:{uid}:{self.group[group][0]}::{home}:{shell}"
        self.shadow[name] = HASH if password else "!"
        self.uid_map[name] = uid
        for g in groups:
            self.group[g][1].append(name)
        self.declared_users[name] = {
            "uid": uid if declared_uid else None,
            "group": group,
            "extraGroups": list(groups),
            "home": home,
            "shell": shell,
            "hasPassword": password,
            "isNormalUser": uid >= 1000,
        }
        return self

    def declared(self) -> DeclaredState:
        users = {n: {"name": n, **u} for n, u in self.declared_users.items()}
        groups = {n: {"name": n, **g} for n, g in self.declared_groups.items()}
        data = {"mutableUsers": self.mutable, "users": users, "groups": groups}
        return DeclaredState.from_json("web1", FlakeInfo("."), data)

    def write(self) -> None:
        etc = self.root / "etc"
        nixos = self.root / "var/lib/nixos"
        etc.mkdir(parents=True, exist_ok=True)
        nixos.mkdir(parents=True, exist_ok=True)
        (etc / "passwd").write_text("".join(line + "\n" for line in self.passwd.values()))
        group_lines = (f"{n}:x:{gid}:{','.join(sorted(m))}\n" for n, (gid, m) in self.group.items())
        (etc / "group").write_text("".join(group_lines))
        (etc / "shadow").write_text("".join(f"{n}:{h}:1::::::\n" for n, h in self.shadow.items()))
        (nixos / "uid-map").write_text(json.dumps(self.uid_map, sort_keys=True))
        (nixos / "gid-map").write_text(json.dumps(self.gid_map, sort_keys=True))
        (nixos / "declarative-users").write_text(" ".join(sorted(self.declared_users)))
        (nixos / "declarative-groups").write_text(" ".join(sorted(self.declared_groups)))

    def scan(self, declared: DeclaredState | None = None) -> dict[str, Any]:
        self.write()
        declared = declared or self.declared()
        section = capture_users.capture(Root.of(self.root), declared)
        return {f.id: f for f in compare_users.compare(declared, section)}

    # imperative changes, as the commands a person would run
    def useradd(self, name: str, uid: int, group: str, groups: list[str] = ()) -> None:  # type: ignore[assignment]
        self.passwd[name] = f"{name}:x:{uid}:{self.group[group][0]}::/home/{name}:{BASH}"
        self.shadow[name] = "!"
        for g in groups:
            self.group[g][1].append(name)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    h = Host(tmp_path / "host")
    h.with_group("root", 0).with_group("wheel", 1).with_group("users", 100).with_group("nogroup", 65534)
    h.with_group("video", 26).with_group("media", 997, declared_gid=False)
    h.with_user("root", 0, "root", home="/root", shell=BASH)
    h.with_user("nobody", 65534, "nogroup")
    h.with_user("alice", 1000, "users", groups=["wheel", "media"], home="/home/alice", shell=BASH, password=True)
    h.with_user("svc", 999, "nogroup", declared_uid=False)
    return h


def test_host_as_declared_has_no_drift(host: Host) -> None:
    assert host.scan() == {}


def test_group_members_may_be_declared_on_the_group(host: Host) -> None:
    host.declared_groups["video"]["members"] = ["svc"]
    host.group["video"][1].append("svc")
    assert host.scan() == {}


def test_useradd_is_an_unmanaged_user(host: Host) -> None:
    host.useradd("bob", 1001, "users")
    found = host.scan()
    assert list(found) == ["users/user/bob"]
    bob = found["users/user/bob"]
    assert (bob.kind, bob.severity) == (Kind.UNMANAGED, Severity.MEDIUM)
    assert bob.fix.command == "userdel bob"
    assert bob.fix.nix.startswith('users.users.bob = { isNormalUser = true; uid = 1001; group = "users";')
    assert not bob.fix.safe


def test_new_wheel_member_is_critical(host: Host) -> None:
    host.group["wheel"][1].append("svc")  # usermod -aG wheel svc
    found = host.scan()
    member = found["users/group/wheel/member/svc"]
    assert (member.severity, member.kind, member.category) == (Severity.CRITICAL, Kind.UNMANAGED, Category.USERS)
    assert member.fix.command == "gpasswd -d svc wheel"
    assert member.fix.nix == 'users.users.svc.extraGroups = [ "wheel" ];'


def test_new_member_of_an_ordinary_group_is_medium(host: Host) -> None:
    host.group["video"][1].append("alice")
    found = host.scan()
    assert list(found) == ["users/group/video/member/alice"]
    assert found["users/group/video/member/alice"].severity == Severity.MEDIUM


def test_removed_member_is_reported_as_missing(host: Host) -> None:
    host.group["media"][1].remove("alice")  # gpasswd -d alice media
    found = host.scan()
    assert list(found) == ["users/group/media/member/alice"]
    assert found["users/group/media/member/alice"].kind == Kind.MISSING
    assert found["users/group/media/member/alice"].fix.command == "gpasswd -a alice media"


def test_uid_compared_with_the_allocation_when_not_declared(host: Host) -> None:
    host.passwd["svc"] = f"svc:x:990:65534::/var/empty:{NOLOGIN}"  # usermod -u 990 svc
    found = host.scan()
    uid = found["users/user/svc/uid"]
    assert (uid.expected, uid.actual, uid.fix.command) == ("999", "990", "usermod -u 999 svc")


def test_shell_home_and_primary_group_changes(host: Host) -> None:
    host.passwd["alice"] = "alice:x:1000:26::/srv/alice:/bin/sh"
    found = host.scan()
    assert found["users/user/alice/shell"].actual == "/bin/sh"
    assert found["users/user/alice/home"].fix.command == "usermod -d /home/alice alice"
    group = found["users/user/alice/group"]
    assert (group.expected, group.actual, group.severity) == ("users (100)", "video (26)", Severity.MEDIUM)


def test_primary_group_changed_to_wheel_is_critical(host: Host) -> None:
    host.passwd["svc"] = f"svc:x:999:1::/var/empty:{NOLOGIN}"  # usermod -g wheel svc
    found = host.scan()
    assert found["users/user/svc/group"].severity == Severity.CRITICAL
    assert not any(i.startswith("users/group/") for i in found)


def test_groups_unmanaged_missing_and_changed(host: Host) -> None:
    host.group["docker"] = (131, [])  # groupadd docker
    del host.group["video"]  # groupdel video
    host.group["wheel"] = (10, host.group["wheel"][1])  # groupmod -g 10 wheel
    found = host.scan()
    assert found["users/group/docker"].kind == Kind.UNMANAGED
    assert found["users/group/docker"].fix.command == "groupdel docker"
    assert found["users/group/video"].kind == Kind.MISSING
    gid = found["users/group/wheel/gid"]
    assert (gid.expected, gid.actual, gid.fix.nix) == ("1", "10", "users.groups.wheel.gid = 10;")


def test_declared_user_absent(host: Host) -> None:
    del host.passwd["svc"]
    found = host.scan()
    assert list(found) == ["users/user/svc"]
    assert found["users/user/svc"].kind == Kind.MISSING


def test_password_set_by_hand_on_immutable_host(host: Host) -> None:
    host.shadow["svc"] = HASH  # passwd svc
    found = host.scan()
    pw = found["users/user/svc/password"]
    assert (pw.expected, pw.actual, pw.fix.command) == ("none", "set", "passwd -l svc")
    assert HASH not in json.dumps([f.to_json() for f in found.values()])


def test_password_locked_by_hand_on_immutable_host(host: Host) -> None:
    host.shadow["alice"] = "!" + HASH  # passwd -l alice
    pw = host.scan()["users/user/alice/password"]
    assert (pw.expected, pw.actual) == ("set", "locked")


def test_passwords_are_not_compared_with_mutable_users(host: Host) -> None:
    host.mutable = True
    host.shadow["svc"] = HASH
    assert host.scan() == {}


def test_unreadable_shadow_is_a_problem_not_a_finding(host: Host) -> None:
    host.shadow["svc"] = HASH
    host.write()
    os.remove(host.root / "etc/shadow")
    section = capture_users.capture(Root.of(host.root), host.declared())
    assert section.data is not None and section.data.passwords is None
    assert "/etc/shadow: not available, passwords are not compared" in section.problems
    assert compare_users.compare(host.declared(), section) == ()


def test_missing_passwd_makes_the_section_unavailable(tmp_path: Path) -> None:
    section = capture_users.capture(Root.of(tmp_path), Host(tmp_path).declared())
    assert section.unavailable == "/etc/passwd cannot be read"


def test_bad_lines_are_problems_and_odd_names_are_printable(host: Host) -> None:
    host.write()
    with open(host.root / "etc/passwd", "ab") as f:
        f.write(b"garbage\nev\xffil:x:1002:100::/home/x:/bin/sh\n")
    section = capture_users.capture(Root.of(host.root), host.declared())
    assert "/etc/passwd:5: expected 7 fields, found 1" in section.problems
    found = {f.id: f for f in compare_users.compare(host.declared(), section)}
    assert list(found) == ["users/user/ev\\xffil"]
    assert found["users/user/ev\\xffil"].subject == "ev\\xffil"
    assert found["users/user/ev\\xffil"].fix.command == "userdel $'ev\\xffil'"
    json.dumps([f.to_json() for f in found.values()], ensure_ascii=False).encode()  # no surrogates left
