"""The NixOS layout: declared from the flake's options, confirmed from the /etc mount and the
accounts backend's files (pure functions; the fixture tier mounts real overlays)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nixdrift import layout
from nixdrift.capture.accounts import GroupEntry, PasswdEntry, parse_userborn_config
from nixdrift.capture.users import UsersLive
from nixdrift.compare import users as compare_users
from nixdrift.declared.model import DeclaredLayout, DeclaredState
from nixdrift.layout import AccountsEvidence, AccountsLayout, EtcLayout, EtcMount, InitLayout, Layout
from nixdrift.models import Category, FlakeInfo, Section

# mountinfo's super options of /etc on a mutable system.etc.overlay host (mounted by the initrd)
MUTABLE = layout.parse_options(
    (
        "rw",
        "lowerdir=/run/nixos-etc-metadata::/etc-basedir",
        "upperdir=/sysroot/.rw-etc/upper",
        "workdir=/sysroot/.rw-etc/work",
        "redirect_dir=on",
        "metacopy=on",
    )
)
IMMUTABLE = layout.parse_options(("ro", "lowerdir=/run/nixos-etc-metadata::/etc-basedir", "redirect_dir=on"))


def test_declared_layout_follows_the_options_and_their_nixos_defaults() -> None:
    assert layout.declared_layout(DeclaredLayout()) == Layout(
        EtcLayout.CLASSIC, AccountsLayout.PERL, InitLayout.SCRIPTED
    )
    bashless = DeclaredLayout(etc_overlay=True, userborn=True, nixos_init=True)
    assert layout.declared_layout(bashless).to_json() == {
        "etc": "overlay",
        "accounts": "userborn",
        "init": "nixos-init",
    }
    immutable = DeclaredLayout.from_json({"etcOverlay": True, "etcOverlayMutable": False, "sysusers": True})
    assert layout.declared_layout(immutable).etc is EtcLayout.OVERLAY_IMMUTABLE
    assert layout.declared_layout(immutable).accounts is AccountsLayout.SYSUSERS
    # userborn.nix: passwordFilesLocation defaults to /var/lib/nixos on an immutable /etc
    assert DeclaredLayout.from_json({"etcOverlay": True, "etcOverlayMutable": False}).userborn_password_files == (
        "/var/lib/nixos"
    )
    assert DeclaredLayout.from_json({}).userborn_password_files == "/etc"


def test_the_initrd_paths_in_mountinfo_are_read_as_the_running_system_sees_them() -> None:
    mount = EtcMount("overlay", False, MUTABLE)
    assert mount.upper == "/.rw-etc/upper"
    assert mount.lowers == ("/run/nixos-etc-metadata", "/etc-basedir")
    assert layout.host_path("/sysroot") == "/"
    assert layout.host_path("/sysrootx/y") == "/sysrootx/y"


def test_live_etc_is_told_from_the_mount() -> None:
    assert layout.live_etc(EtcMount("overlay", False, MUTABLE), False) is EtcLayout.OVERLAY
    assert layout.live_etc(EtcMount("overlay", True, IMMUTABLE), False) is EtcLayout.OVERLAY_IMMUTABLE
    assert layout.live_etc(None, True) is EtcLayout.CLASSIC
    assert layout.live_etc(EtcMount("ext4", False, {}), False) is None


def test_etc_not_as_declared_says_why() -> None:
    overlay = Layout(EtcLayout.OVERLAY, AccountsLayout.USERBORN, InitLayout.NIXOS_INIT)
    immutable = Layout(EtcLayout.OVERLAY_IMMUTABLE, AccountsLayout.USERBORN, InitLayout.NIXOS_INIT)
    classic = Layout(EtcLayout.CLASSIC, AccountsLayout.PERL, InitLayout.SCRIPTED)
    rw, ro = EtcMount("overlay", False, MUTABLE), EtcMount("overlay", True, IMMUTABLE)
    assert layout.etc_mismatch(overlay, rw, False) is None
    assert layout.etc_mismatch(immutable, ro, False) is None
    assert layout.etc_mismatch(classic, None, True) is None
    assert "read-write" in (layout.etc_mismatch(immutable, rw, False) or "")
    assert "read-only" in (layout.etc_mismatch(overlay, ro, False) or "")
    assert "not a mount point" in (layout.etc_mismatch(overlay, None, True) or "")
    assert "a tmpfs mount" in (layout.etc_mismatch(overlay, EtcMount("tmpfs", False, {}), False) or "")
    assert "classic" in (layout.etc_mismatch(classic, rw, False) or "")


def test_accounts_backend_is_told_from_its_files() -> None:
    userborn = Layout(EtcLayout.OVERLAY, AccountsLayout.USERBORN, InitLayout.SCRIPTED)
    # a host moved from update-users-groups.pl to userborn keeps the old maps: still userborn
    assert layout.accounts_mismatch(userborn, AccountsEvidence(True, True, False)) is None
    why = layout.accounts_mismatch(userborn, AccountsEvidence(True, False, False))
    assert why == "the accounts are kept by perl, but the flake declares userborn"
    assert layout.accounts_mismatch(userborn, AccountsEvidence(False, False, False)) is None  # nothing to judge


def test_report_layout_says_whether_the_host_confirms_it() -> None:
    declared = DeclaredLayout(etc_overlay=True, userborn=True)
    same = layout.report_layout(declared, EtcLayout.OVERLAY, AccountsLayout.USERBORN)
    assert same == {"etc": "overlay", "accounts": "userborn", "init": "scripted", "live": "as declared"}
    other = layout.report_layout(declared, EtcLayout.CLASSIC, None)
    assert other["live"] == "etc classic, accounts unknown"


def test_userborn_config_names_are_read_and_bad_entries_reported() -> None:
    text = '{"users": [{"name": "alice", "uid": 1000}, {"uid": 3}], "groups": [{"name": "wheel", "members": []}]}'
    (users, groups), problems = parse_userborn_config(text, "prev.json")
    assert (users, groups) == (("alice",), ("wheel",))
    assert problems == ("prev.json:1: users[2]: no usable name",)


@given(st.text(max_size=300))
def test_userborn_config_parser_never_raises(text: str) -> None:
    (users, groups), _ = parse_userborn_config(text)
    assert all(":" not in n for n in users + groups)


@given(st.lists(st.text(alphabet="abc=:/,", max_size=20), max_size=6))
def test_mount_options_parser_never_raises(options: list[str]) -> None:
    mount = EtcMount("overlay", False, layout.parse_options(tuple(options)))
    assert all(p for p in mount.lowers)


def _users_section(backend: AccountsEvidence) -> Section[UsersLive]:
    passwd = (PasswdEntry("root", 0, 0, "", "/root", "/bin/sh"), PasswdEntry("mallory", 1001, 100, "", "/", "/bin/sh"))
    groups = (GroupEntry("root", 0, ()), GroupEntry("users", 100, ()), GroupEntry("wheel", 1, ("mallory",)))
    live = UsersLive({u.name: u for u in passwd}, {g.name: g for g in groups}, None, backend=backend)
    return Section(Category.USERS, live)


def _declared(mutable_users: bool, **layout_json: bool) -> DeclaredState:
    users = {"root": {"name": "root", "uid": 0, "group": "root", "home": "/root", "shell": "/bin/sh"}}
    groups = {n: {"name": n, "gid": g} for n, g in (("root", 0), ("users", 100), ("wheel", 1))}
    data = {"mutableUsers": mutable_users, "users": users, "groups": groups, "layout": layout_json}
    return DeclaredState.from_json("web1", FlakeInfo("."), data)


def test_fixes_fit_the_accounts_backend() -> None:
    """shadow-utils advice where it can run; none where the files are read-only (an immutable /etc,
    or userborn's read-only bind mounts with users.mutableUsers = false)."""
    perl = compare_users.compare(_declared(True), _users_section(AccountsEvidence(True, False, False)))
    assert {f.id: f.fix.command for f in perl}["users/group/wheel/member/mallory"] == "gpasswd -d mallory wheel"
    userborn = AccountsEvidence(False, True, False)
    mutable = compare_users.compare(_declared(True, userborn=True), _users_section(userborn))
    assert {f.id: f.fix.command for f in mutable}["users/user/mallory"] == "userdel mallory"
    bound = compare_users.compare(_declared(False, userborn=True), _users_section(userborn))
    assert all(f.fix.command == "" and "bind-mounted read-only" in f.fix.reason for f in bound)
    assert {f.id for f in bound} == {f.id for f in mutable}  # the same findings, only the fix differs
    immutable = _declared(True, userborn=True, etcOverlay=True, etcOverlayMutable=False)
    assert all("/etc is read-only" in f.fix.reason for f in compare_users.compare(immutable, _users_section(userborn)))
