"""/etc drift on hand-built host trees whose closure etc/ lives in the tree's own nix/store."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixdrift.capture import etc as capture_etc
from nixdrift.capture.etc import EntryType, parse_clean, parse_sidecar_id
from nixdrift.compare import etc as compare_etc
from nixdrift.compare.common import quote
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Finding, FlakeInfo, Kind, Section, Severity
from nixdrift.rootfs import Root

TOP = "/nix/store/0000aaaa-nixos-system-web1"
ETC_OUT = "/nix/store/1111bbbb-etc"


class Host:
    """A NixOS root: a toplevel whose etc/ is built like NixOS's etc builder, and /etc as
    setup-etc.pl leaves it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tree = root / ETC_OUT[1:] / "etc"
        self.tree.mkdir(parents=True)
        (root / TOP[1:]).mkdir(parents=True)
        (root / TOP[1:] / "etc").symlink_to(ETC_OUT + "/etc")
        self.etc = root / "etc"
        self.etc.mkdir()
        (self.etc / "static").symlink_to(ETC_OUT + "/etc")
        self.clean: list[str] = []
        self.count = 0
        self.declared_etc: dict[str, dict[str, Any]] = {}
        self.section: Section[Any] | None = None

    def _store(self, name: str, content: str) -> str:
        self.count += 1
        path = f"/nix/store/{self.count:04d}cccc-{name.replace('/', '-')}"
        (self.root / path[1:]).write_text(content)
        return path

    def _closure_link(self, rel: str, content: str) -> str:
        source = self._store(rel, content)
        (self.tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.tree / rel).symlink_to(source)
        self.declared_etc[rel] = {"target": rel}
        return source

    def live(self, rel: str) -> Path:
        path = self.etc / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def managed(self, rel: str, content: str = "declared\n") -> Host:
        self._closure_link(rel, content)
        self.live(rel).symlink_to(f"/etc/static/{rel}")
        return self

    def copy(self, rel: str, content: str = "declared\n", mode: str = "0440", uid: str = "+0", gid: str = "+0") -> Host:
        self._closure_link(rel, content)
        for suffix, text in ((".mode", mode), (".uid", uid), (".gid", gid)):
            (self.tree / f"{rel}{suffix}").write_text(text + "\n")
        self.live(rel).write_text(content)
        os.chmod(self.etc / rel, int(mode, 8))
        self.clean.append(rel)
        self.declared_etc[rel].update(mode=mode)
        return self

    def direct(self, rel: str, content: str = "zone\n") -> Host:
        source = self._closure_link(rel, content)
        (self.tree / f"{rel}.mode").write_text("direct-symlink\n")
        self.live(rel).symlink_to(source)
        return self

    def file(self, rel: str | bytes, content: str = "by hand\n", mode: int = 0o644) -> Host:
        path = os.path.join(os.fsencode(self.etc), os.fsencode(rel))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
        os.chmod(path, mode)
        return self

    def declared(self, toplevel: str | None = TOP) -> DeclaredState:
        data = {"toplevel": toplevel, "etc": self.declared_etc}
        return DeclaredState.from_json("web1", FlakeInfo("."), data)

    def scan(self, declared: DeclaredState | None = None) -> dict[str, Finding]:
        (self.etc / ".clean").write_text("".join(f"{rel}\n" for rel in sorted(self.clean)))
        declared = declared or self.declared()
        self.section = capture_etc.capture(Root.of(self.root), declared)
        return {f.id: f for f in compare_etc.compare(declared, self.section)}


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """A host exactly as declared, with what activation and the system write beside it."""
    h = Host(tmp_path / "host")
    h.managed("nix/nix.conf").managed("ssh/sshd_config").managed("pam.d/login").managed("hosts")
    h.copy("sudoers", "root ALL=(ALL) ALL\n").direct("localtime")
    for name in ("passwd", "group", "shadow", "subuid", "subgid", "machine-id", "adjtime", "NIXOS", ".pwd.lock"):
        h.file(name, "system\n")
    h.file("ssh/ssh_host_ed25519_key", "-----BEGIN OPENSSH PRIVATE KEY-----\n", mode=0o600)
    h.file("nixos/flake.nix", "{ }\n").file("resolv.conf", "nameserver 10.0.0.1\n")
    (h.etc / "mtab").symlink_to("/proc/mounts")
    return h


def test_host_as_declared_has_no_drift(host: Host) -> None:
    assert host.scan() == {}
    assert host.section is not None and host.section.problems == ()


def test_allowlisted_secrets_are_never_hashed(host: Host) -> None:
    host.scan()
    assert host.section is not None
    assert host.section.data.entries["ssh/ssh_host_ed25519_key"].sha256 is None
    assert "nixos/flake.nix" not in host.section.data.entries  # the config repo is not walked


def test_imperative_file_is_unmanaged_with_digest_not_contents(host: Host) -> None:
    host.file("motd.local", "s3cret token\n", mode=0o600)
    found = host.scan()
    assert list(found) == ["etc/motd.local"]
    f = found["etc/motd.local"]
    assert (f.kind, f.severity, f.subject) == (Kind.UNMANAGED, Severity.MEDIUM, "/etc/motd.local")
    assert f.fix.command == "rm -- /etc/motd.local" and not f.fix.safe
    assert (
        f.fix.nix
        == 'environment.etc."motd.local" = { source = ./motd.local; mode = "0600"; user = "+0"; group = "+0"; };'
    )
    assert f.evidence["path"] == "/etc/motd.local" and len(f.evidence["sha256"]) == 12
    assert "s3cret" not in json.dumps(f.to_json())


def test_managed_link_replaced_by_a_file(host: Host) -> None:
    (host.etc / "hosts").unlink()
    host.file("hosts", "127.0.0.1 evil\n")
    f = host.scan()["etc/hosts"]
    assert (f.kind, f.severity) == (Kind.CHANGED, Severity.MEDIUM)
    assert f.expected == "symlink -> /etc/static/hosts"
    assert f.actual.startswith("file sha256 ")
    assert f.fix.command == "ln -sfn /etc/static/hosts /etc/hosts" and f.fix.safe


def test_managed_link_pointing_elsewhere(host: Host) -> None:
    (host.etc / "nix/nix.conf").unlink()
    (host.etc / "nix/nix.conf").symlink_to("/root/nix.conf")
    f = host.scan()["etc/nix/nix.conf"]
    assert f.actual == "symlink -> /root/nix.conf"
    assert "managed link points to /root/nix.conf" in f.message


def test_edited_managed_copy_of_sudoers_is_sensitive(host: Host) -> None:
    (host.etc / "sudoers").chmod(0o640)
    (host.etc / "sudoers").write_text("root ALL=(ALL) ALL\nbob ALL=(ALL) NOPASSWD: ALL\n")
    f = host.scan()["etc/sudoers"]
    assert (f.kind, f.severity, f.evidence["rule"]) == (Kind.CHANGED, Severity.HIGH, "etc-sensitive")
    assert "content differs" in f.message and "mode 0640, declared 0440" in f.message
    assert f.fix.command == "install -m 0440 -o 0 -g 0 /etc/static/sudoers /etc/sudoers"
    assert "NOPASSWD" not in json.dumps(f.to_json())


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_managed_copy_owner_changed(host: Host) -> None:
    os.chown(host.etc / "sudoers", 1000, 0)
    f = host.scan()["etc/sudoers"]
    assert f.message == "/etc/sudoers: owner 1000:0, declared 0:0"


def test_copy_owner_named_in_sidecar_is_resolved_through_passwd(host: Host) -> None:
    host.copy("named.conf", uid="named", gid="+0", mode="0400")
    host.file("passwd", "named:x:0:0::/:/bin/sh\n")
    assert host.scan() == {}
    assert host.section is not None and host.section.data.closure["named.conf"].uid == 0


def test_direct_symlink_retargeted(host: Host) -> None:
    (host.etc / "localtime").unlink()
    (host.etc / "localtime").symlink_to("/usr/share/zoneinfo/UTC")
    f = host.scan()["etc/localtime"]
    assert f.fix.command.startswith("ln -sfn /nix/store/") and f.fix.command.endswith(" /etc/localtime")


def test_sensitive_imperative_file_and_missing_file(host: Host) -> None:
    host.file("ssh/sshd_config.d/backdoor.conf", "PermitRootLogin yes\n")
    (host.etc / "pam.d/login").unlink()
    found = host.scan()
    assert found["etc/ssh/sshd_config.d/backdoor.conf"].severity == Severity.HIGH
    missing = found["etc/pam.d/login"]
    assert (missing.kind, missing.severity) == (Kind.MISSING, Severity.HIGH)
    assert missing.fix.command == "ln -sfn /etc/static/pam.d/login /etc/pam.d/login" and missing.fix.safe
    assert missing.fix.nix == 'environment.etc."pam.d/login".enable = false;'


def test_directory_in_place_of_a_managed_link_is_one_finding(host: Host) -> None:
    host._closure_link("xdg", "unused")
    host.file("xdg/autostart/a.desktop").file("xdg/autostart/b.desktop")
    found = host.scan()
    assert list(found) == ["etc/xdg"]
    assert not found["etc/xdg"].fix.safe


def test_obsolete_copy_still_listed_in_clean(host: Host) -> None:
    host.file("old.conf")
    host.clean.append("old.conf")
    f = host.scan()["etc/old.conf"]
    assert f.kind == Kind.UNMANAGED and "earlier generation" in f.message


def test_odd_file_names(host: Host) -> None:
    names: list[str | bytes] = ["with space", "quo'te\"s", "new\nline", b"bad\xffbyte", "$(reboot)"]
    for name in names:
        host.file(name)
    found = host.scan()
    assert sorted(found) == sorted(
        ["etc/with space", "etc/quo'te\"s", "etc/new\\x0aline", "etc/bad\\xffbyte", "etc/$(reboot)"]
    )
    assert found["etc/new\\x0aline"].fix.command == "rm -- $'/etc/new\\x0aline'"
    assert found["etc/bad\\xffbyte"].fix.command == "rm -- $'/etc/bad\\xffbyte'"
    assert found["etc/$(reboot)"].fix.command == "rm -- '/etc/$(reboot)'"
    assert found["etc/with space"].fix.nix == 'environment.etc."with space".source = ./. + "/with space";'
    json.dumps([f.to_json() for f in found.values()], ensure_ascii=False).encode()  # encodable: no surrogates


def test_fifo_and_socket_are_reported_without_being_opened(host: Host) -> None:
    os.mkfifo(host.etc / "pipe")  # opening it would block the scan
    with socket.socket(socket.AF_UNIX) as s:
        with contextlib.suppress(OSError):  # the path may be too long for AF_UNIX: then the fifo alone
            s.bind(str(host.etc / "sock"))
        found = host.scan()
    assert found["etc/pipe"].actual.startswith("fifo mode ")
    assert found["etc/pipe"].fix.command == "rm -- /etc/pipe"
    if (host.etc / "sock").exists():
        assert found["etc/sock"].evidence["type"] == "socket"


def test_unreadable_file_is_a_problem_and_the_scan_goes_on(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    host.file("locked.conf").file("other.conf")
    real = capture_etc.sha256_of

    def refuse(path: Path, limit: int = capture_etc.MAX_HASH_BYTES) -> str | None:
        if path.name == "locked.conf":
            raise PermissionError(13, "Permission denied")
        return real(path, limit)

    monkeypatch.setattr(capture_etc, "sha256_of", refuse)
    found = host.scan()
    assert host.section is not None
    assert "/etc/locked.conf: cannot read: Permission denied" in host.section.problems
    assert found["etc/locked.conf"].evidence.get("sha256") is None
    assert "etc/other.conf" in found


def test_declared_closure_not_built_falls_back_to_etc_static(host: Host) -> None:
    host.file("extra.conf")
    found = host.scan(host.declared(toplevel="/nix/store/9999zzzz-nixos-system-web1"))
    assert list(found) == ["etc/extra.conf"]
    assert host.section is not None
    assert any("is not in the store: comparing with /etc/static" in p for p in host.section.problems)


def test_no_reference_tree_still_finds_imperative_files_and_declared_absences(host: Host) -> None:
    (host.etc / "static").unlink()
    (host.etc / "hosts").unlink()
    host.file("extra.conf")
    found = host.scan(host.declared(toplevel=None))
    assert sorted(found) == ["etc/extra.conf", "etc/hosts"]
    assert found["etc/hosts"].kind == Kind.MISSING


def test_a_live_symlink_directory_hides_its_children_from_missing(host: Host) -> None:
    (host.etc / "pam.d/login").unlink()
    (host.etc / "pam.d").rmdir()
    (host.etc / "pam.d").symlink_to("/opt/pam.d")
    found = host.scan()
    assert list(found) == ["etc/pam.d"]


def test_entries_have_types(host: Host) -> None:
    host.scan()
    assert host.section is not None
    entries = host.section.data.entries
    assert entries["hosts"].type is EntryType.SYMLINK and entries["sudoers"].type is EntryType.FILE
    assert entries["ssh"].type is EntryType.DIR


# --- parsers and quoting -------------------------------------------------------------------------

any_text = st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", errors="surrogateescape")))


def test_clean_file_as_setup_etc_writes_it() -> None:
    assert parse_clean("sudoers\nssh/authorized_keys.d/alice\n") == (("sudoers", "ssh/authorized_keys.d/alice"), ())
    assert parse_clean("/abs\n../up\n") == (
        (),
        ("/etc/.clean:1: not a path below /etc: '/abs'", "/etc/.clean:2: not a path below /etc: '../up'"),
    )


@given(any_text)
def test_clean_parser_never_raises(text: str) -> None:
    rels, problems = parse_clean(text)
    assert all(r and not r.startswith("/") and "\n" not in r for r in rels)
    assert all("\n" not in p for p in problems)


@given(any_text)
def test_sidecar_parser_never_raises(text: str) -> None:
    value = parse_sidecar_id(text, {"root": 0})
    assert value is None or value >= 0


def test_sidecar_ids() -> None:
    assert parse_sidecar_id("+42\n", {}) == 42
    assert parse_sidecar_id("root", {"root": 0}) == 0
    assert parse_sidecar_id("ghost", {}) is None


@given(any_text)
def test_quote_is_one_shell_word_without_raw_control_bytes(text: str) -> None:
    quoted = quote(text)
    assert "\n" not in quoted
    quoted.encode("utf-8")  # no surrogates left


def test_a_directory_that_cannot_be_listed_hides_nothing_as_absent(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.scandir

    def refuse(path: str | os.PathLike[str]) -> Any:
        if str(path).endswith("/etc/pam.d"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(capture_etc.os, "scandir", refuse)
    found = host.scan()
    assert not [i for i in found if i.startswith("etc/pam.d/")]  # unknown, not "declared but absent"
    assert host.section is not None
    assert "/etc/pam.d: cannot list: Permission denied" in host.section.problems
