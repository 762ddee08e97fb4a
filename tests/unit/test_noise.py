"""Noise on real activation output, and fixes an operator can paste: what NixOS activation and
shadow-utils write in /etc is not drift; an `environment.etc` fix for an entry the flake already
defines replaces it (lib.mkForce) and names the file to copy; "Recommended actions" only points at a
Nix snippet that exists."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from factories import make_report
from nixdrift.capture.etc import ClosureEntry, EntryType, EtcEntry, EtcLive
from nixdrift.compare import etc as compare_etc
from nixdrift.compare.common import finding, sh
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Category, Finding, FlakeInfo, Kind, Section
from nixdrift.report.markdown import recommended_actions, render

NIX = shutil.which("nix-instantiate")
DIGEST = "ab" * 32


def declared(etc: dict[str, dict[str, Any]] | None = None) -> DeclaredState:
    return DeclaredState.from_json("web1", FlakeInfo("/etc/nixos"), {"etc": etc or {}})


def compare(
    entries: list[EtcEntry],
    closure: list[ClosureEntry] | None = None,
    etc: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Finding]:
    live = EtcLive({e.rel: e for e in entries}, frozenset(), {c.rel: c for c in closure or ()}, "/etc/static")
    return {f.id: f for f in compare_etc.compare(declared(etc), Section(Category.ETC, live))}


def file(rel: str, mode: int = 0o644) -> EtcEntry:
    return EtcEntry(rel, EntryType.FILE, mode, 0, 0, None, DIGEST, 10)


# --- item 9: what activation and shadow-utils leave is not drift -------------------------------

# update-users-groups.pl rewrites passwd, group, shadow, subuid and subgid; shadow-utils (useradd,
# usermod, groupadd, passwd, chpasswd, vipw) and systemd-sysusers keep `<file>-`, hold `<file>.lock`
# and write `<file>+` while they run; glibc's lckpwdf() leaves .pwd.lock.
ACTIVATION_AND_SHADOW_UTILS = [
    *("passwd", "group", "shadow", "gshadow", "subuid", "subgid", ".pwd.lock"),
    *(f"{base}{suffix}" for base in ("passwd", "group", "shadow", "gshadow", "subuid", "subgid") for suffix in "-+"),
    *(f"{base}.lock" for base in ("passwd", "group", "shadow", "gshadow", "subuid", "subgid")),
]


@pytest.mark.parametrize("rel", [*ACTIVATION_AND_SHADOW_UTILS, "passwd.4242", "shadow.17", "subgid.3"])
def test_what_activation_and_shadow_utils_write_is_not_drift(rel: str) -> None:
    assert compare([file(rel)]) == {}


@pytest.mark.parametrize(
    "rel", ["passwd.bak", "subuid~", "shadow-old", "subgid.locked", "login.defs", "passwd.1x", "hosts.4242"]
)
def test_look_alikes_of_those_files_are_still_drift(rel: str) -> None:
    assert list(compare([file(rel)])) == [f"etc/{rel}"]


def test_setup_etc_temporaries_of_managed_entries_are_not_drift() -> None:
    """setup-etc.pl writes `<entry>.tmp` and renames it over each entry it installs: the daemon can
    catch one mid-activation. A `.tmp` beside an entry the system does not manage is still drift."""
    closure = [ClosureEntry("hosts", "symlink", None)]
    links = [EtcEntry(name, EntryType.SYMLINK, target="/etc/static/hosts") for name in ("hosts", "hosts.tmp")]
    assert list(compare([*links, file("notes.tmp")], closure)) == ["etc/notes.tmp"]


# --- item 10: fixes for entries the flake already defines --------------------------------------


def test_a_file_edited_over_a_declared_link_is_replaced_with_mkforce() -> None:
    """The flake declares `environment.etc.motd.text`; `sed -i /etc/motd` left a plain file. A
    second `.source` definition would conflict: the fix forces it and says which file to copy."""
    found = compare([file("motd")], [ClosureEntry("motd", "symlink", None)], {"motd": {"target": "motd"}})
    nix = found["etc/motd"].fix.nix
    *notes, assignment = nix.split("\n")
    assert assignment == 'environment.etc."motd".source = lib.mkForce ./motd;'
    assert all(n.startswith("# ") for n in notes)
    assert "replaces the flake's definition of /etc/motd" in notes[0]
    assert "copy the live file /etc/motd into the flake" in notes[1] and notes[1].endswith("as ./motd")


def test_a_declared_copy_forces_its_mode_and_owner_too() -> None:
    """`chmod 0644 /etc/sudoers` on a copy declared 0440: declaring the live state must force the
    mode as well, or the rebuild puts 0440 back."""
    copy = ClosureEntry("sudoers", "0440", None, 0, 0, "+0:+0", DIGEST)
    f = compare([file("sudoers", 0o644)], [copy])["etc/sudoers"]
    assignment = f.fix.nix.split("\n")[-1]
    assert assignment == (
        'environment.etc."sudoers" = { source = lib.mkForce ./sudoers; mode = lib.mkForce "0644"; '
        'user = lib.mkForce "+0"; group = lib.mkForce "+0"; };'
    )


def test_a_retargeted_declared_link_is_replaced_without_a_file_to_copy() -> None:
    link = EtcEntry("nix/nix.conf", EntryType.SYMLINK, target="/root/nix.conf")
    f = compare([link], [ClosureEntry("nix/nix.conf", "symlink", None)])["etc/nix/nix.conf"]
    *notes, assignment = f.fix.nix.split("\n")
    assert assignment == 'environment.etc."nix/nix.conf".source = lib.mkForce "/root/nix.conf";'
    assert len(notes) == 1 and "replaces" in notes[0]


def test_a_declared_entry_missing_from_the_reference_tree_is_replaced_too() -> None:
    """The declared system is not in the store here: the flake's environment.etc still names it."""
    live = EtcLive({"issue": file("issue")}, frozenset(), None, "")
    (f,) = compare_etc.compare(declared({"issue": {"target": "issue"}}), Section(Category.ETC, live))
    assert f.fix.nix.endswith('environment.etc."issue".source = lib.mkForce ./issue;')


def test_an_undeclared_file_gets_a_plain_definition() -> None:
    f = compare([file("foo.conf")])["etc/foo.conf"]
    assert f.fix.nix == 'environment.etc."foo.conf".source = ./foo.conf;'


@pytest.mark.skipif(NIX is None, reason="needs nix-instantiate")
def test_the_forced_snippet_is_nix_that_overrides_the_same_entry(tmp_path: Path) -> None:
    """With lib.mkForce as nixpkgs defines it (an override of priority 50), the snippet evaluates to
    forced definitions of the very entry, comments and all."""
    assert NIX is not None
    copy = ClosureEntry("sudoers.d/10 ops", "0440", None, 0, 0, "+0:+0", DIGEST)
    f = compare([file("sudoers.d/10 ops", 0o600)], [copy])["etc/sudoers.d/10 ops"]
    module = tmp_path / "module.nix"
    module.write_text("{ lib }: {\n" + f.fix.nix + "\n}\n")
    expr = (
        f'let lib = {{ mkForce = content: {{ _type = "override"; priority = 50; inherit content; }}; }};'
        f" e = (import {module} {{ inherit lib; }}).environment.etc;"
        ' in { names = builtins.attrNames e; mode = e."sudoers.d/10 ops".mode;'
        ' prio = e."sudoers.d/10 ops".source.priority; }'
    )
    out = subprocess.run([NIX, "--eval", "--strict", "--json", "-E", expr], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "names": ["sudoers.d/10 ops"],
        "mode": {"_type": "override", "priority": 50, "content": "0600"},
        "prio": 50,
    }


# --- Recommended actions -----------------------------------------------------------------------


def _unit_stopped() -> Finding:
    return finding(
        rule_name="unit-stopped",
        id="services/nginx.service/active",
        category=Category.SERVICES,
        subject="nginx.service",
        kind=Kind.CHANGED,
        expected="active",
        actual="inactive",
        message="nginx.service is stopped",
        command=sh("systemctl", "start", "nginx.service"),
        reason="starting a unit needs a decision",
    )


def test_recommended_actions_mention_a_nix_snippet_only_when_there_is_one() -> None:
    without = _unit_stopped()
    with_nix = compare([file("foo.conf")])["etc/foo.conf"]
    report = make_report(without, with_nix)
    lines = {line.split(": ", 1)[0].strip("- "): line for line in recommended_actions(report) if ": " in line}
    assert "snippet" not in lines["services/nginx.service/active"]
    assert "systemctl start nginx.service" in lines["services/nginx.service/active"]
    assert "declare the Nix snippet above" in lines["etc/foo.conf"]
    assert without.fix.nix == "" and "Nix snippet" not in render(make_report(without))
