"""The one bounded reader under a root: inside the root, regular files only, at most 64 MiB.

And what the collectors make of a source that cannot be read in full: its category is
unavailable with the reason, never "ok" and never a verdict drawn from what little was read.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixdrift.capture import exposure as capture_exposure
from nixdrift.capture import firewall as capture_firewall
from nixdrift.capture import mounts as capture_mounts
from nixdrift.capture import network as capture_network
from nixdrift.capture import packages as capture_packages
from nixdrift.capture import users as capture_users
from nixdrift.capture.exposure import read_listening
from nixdrift.capture.fwparse import read_iptables_save
from nixdrift.capture.manifests import read_manifest_json, read_manifest_nix
from nixdrift.capture.nftparse import read_nft_json
from nixdrift.compare import users as compare_users
from nixdrift.declared.model import DeclaredState
from nixdrift.models import FlakeInfo
from nixdrift.rootfs import MAX_READ, Root, UnsafeRead

SECRET = "TOPSECRET-outside-the-root-7a"


def declared(**extra: object) -> DeclaredState:
    return DeclaredState.from_json("web1", FlakeInfo("/etc/nixos"), dict(extra))


@pytest.fixture
def root(tmp_path: Path) -> Root:
    (tmp_path / "root" / "etc").mkdir(parents=True)
    return Root.of(tmp_path / "root")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file on this machine, beside the root and not below it."""
    secret = tmp_path / "outside" / "secret"
    secret.parent.mkdir()
    secret.write_text(SECRET + "\n")
    return secret


@pytest.fixture
def deadline() -> Iterator[None]:
    """A read that blocks fails the test after 10 s instead of hanging the suite."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError("the read blocked")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def below(root: Root, path: str) -> Path:
    where = root.path(path)
    where.parent.mkdir(parents=True, exist_ok=True)
    return where


# --- the reader ------------------------------------------------------------------------------------


def test_an_absolute_symlink_is_resolved_below_the_root(root: Root, outside: Path) -> None:
    below(root, "/etc/passwd").symlink_to(outside)
    with pytest.raises(FileNotFoundError):  # ROOT/<outside path> does not exist: nothing is read
        root.read_text("/etc/passwd")
    inside = below(root, str(outside))
    inside.write_text("the root's own copy\n")
    assert root.read_text("/etc/passwd") == "the root's own copy\n"


def test_a_relative_symlink_cannot_climb_out_of_the_root(root: Root, outside: Path) -> None:
    climb = "../" * (len(root.prefix.parts) + 3) + str(outside).lstrip("/")
    below(root, "/etc/passwd").symlink_to(climb)
    with pytest.raises(FileNotFoundError):
        root.read_text("/etc/passwd")
    below(root, str(outside)).write_text("inside\n")  # `..` stops at the root, as at the real /
    assert root.read_text("/etc/passwd") == "inside\n"


def test_dotdot_in_the_asked_path_stays_below_the_root(root: Root, outside: Path) -> None:
    climb = "/etc/" + "../" * (len(root.prefix.parts) + 3) + str(outside).lstrip("/")
    with pytest.raises(FileNotFoundError):
        root.read_text(climb)


def test_a_fifo_is_refused_without_blocking(root: Root, deadline: None) -> None:
    os.mkfifo(below(root, "/etc/passwd"))
    with pytest.raises(UnsafeRead, match="FIFO, not a regular file") as caught:
        root.read_text("/etc/passwd")
    assert caught.value.errno == errno.EINVAL


def test_a_device_is_refused(root: Root, deadline: None) -> None:
    os.mknod(below(root, "/dev/zero"), 0o600 | 0o020000, os.makedev(1, 5))  # the kernel's /dev/zero
    below(root, "/proc/self/mountinfo").symlink_to("/dev/zero")
    with pytest.raises(UnsafeRead, match="character device"):
        root.read_bytes("/proc/self/mountinfo")
    with pytest.raises(UnsafeRead, match="character device"):
        Root().read_bytes("/dev/zero")  # on the live root too


def test_a_file_over_the_limit_is_refused_before_it_is_read(root: Root) -> None:
    big = below(root, "/etc/passwd")
    with big.open("wb") as handle:
        handle.truncate(MAX_READ + 1)  # sparse: costs no disk
    with pytest.raises(UnsafeRead, match="64 MiB read limit") as caught:
        root.read_bytes("/etc/passwd")
    assert caught.value.errno == errno.EFBIG
    big.write_text("0123456789")
    assert root.read_bytes("/etc/passwd", limit=10) == b"0123456789"
    with pytest.raises(UnsafeRead):
        root.read_bytes("/etc/passwd", limit=9)


def test_a_captured_source_must_be_a_plain_file(root: Root, outside: Path) -> None:
    captured = below(root, "/.nixdrift/iptables-save.txt")
    below(root, str(outside)).write_text("*filter\nCOMMIT\n")  # even a link resolved inside is refused
    captured.symlink_to(outside)
    with pytest.raises(UnsafeRead, match="symlink"):
        root.read_captured("iptables-save.txt")
    captured.unlink()
    captured.write_text("*filter\nCOMMIT\n")
    assert root.read_captured("iptables-save.txt") == b"*filter\nCOMMIT\n"


def test_the_live_root_reads_proc_files_that_stat_as_empty() -> None:
    assert os.stat("/proc/self/mountinfo").st_size == 0
    text = Root().read_text("/proc/self/mountinfo")
    assert " / / " in text


def test_a_live_proc_mounted_below_the_root_is_refused(tmp_path: Path) -> None:
    """Under --root, /proc/self/mountinfo must be the root's copy, never this machine's kernel file."""
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    script = textwrap.dedent(
        f"""
        import subprocess, sys
        subprocess.run(["mount", "--bind", "/proc", {str(root / "proc")!r}], check=True)
        from nixdrift.rootfs import Root, UnsafeRead
        try:
            Root.of({str(root)!r}).read_text("/proc/self/mountinfo")
        except UnsafeRead as exc:
            print("refused:", exc.strerror)
        else:
            print("read")
        """
    )
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "refused: a file of the running kernel (procfs or sysfs), not of the root"


# --- what the collectors make of it --------------------------------------------------------------


def test_mountinfo_linked_to_dev_zero_makes_mounts_unavailable(root: Root, deadline: None) -> None:
    os.mknod(below(root, "/dev/zero"), 0o600 | 0o020000, os.makedev(1, 5))
    below(root, "/proc/self/mountinfo").symlink_to("/dev/zero")
    section = capture_mounts.capture(root, declared())
    assert section.data is None
    assert section.unavailable == "/proc/self/mountinfo cannot be read: a character device, not a regular file"


def test_a_mountinfo_cut_short_makes_mounts_unavailable(root: Root) -> None:
    line = "22 1 0:21 / / rw,relatime - ext4 /dev/vda1 rw\n"
    below(root, "/proc/self/mountinfo").write_text(line + line[:20])
    section = capture_mounts.capture(root, declared())
    assert section.data is None and section.unavailable is not None and "cut short" in section.unavailable


def test_passwd_fifo_and_oversize_make_users_unavailable(root: Root, deadline: None) -> None:
    below(root, "/etc/group").write_text("root:x:0:\n")
    os.mkfifo(below(root, "/etc/passwd"))
    section = capture_users.capture(root, declared())
    assert section.unavailable == "/etc/passwd cannot be read: a FIFO, not a regular file"
    root.path("/etc/passwd").unlink()
    with root.path("/etc/passwd").open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)
    section = capture_users.capture(root, declared())
    assert section.unavailable == "/etc/passwd cannot be read: 100 MiB, larger than the 64 MiB read limit"


def test_resolv_conf_refused_makes_network_unavailable(root: Root, deadline: None) -> None:
    below(root, "/etc/hostname").write_text("web1\n")
    os.mkfifo(below(root, "/etc/resolv.conf"))
    section = capture_network.capture(root, declared())
    assert section.data is None
    assert section.unavailable == "/etc/resolv.conf cannot be read: a FIFO, not a regular file"


def listening(*entries: dict[str, object]) -> str:
    return json.dumps(list(entries), indent=2)


NC = {"proto": "tcp", "address": "0.0.0.0", "port": 4444, "pid": 7, "process": "nc", "unit": "session-1.scope"}
SSH = {"proto": "tcp", "address": "0.0.0.0", "port": 22, "pid": 9, "process": "sshd", "unit": "sshd.service"}


def test_listening_json_cut_short_makes_exposure_unavailable(root: Root) -> None:
    text = listening(SSH, NC)
    below(root, "/.nixdrift/listening.json").write_text(text[: text.index('"nc"')])
    section = capture_exposure.capture(root, declared())
    assert section.data is None
    assert section.unavailable is not None and "not JSON" in section.unavailable
    parsed = read_listening(text[:-1])
    assert parsed.unreadable is not None and parsed.records == ()


def test_one_unreadable_listener_makes_exposure_unavailable(root: Root) -> None:
    below(root, "/.nixdrift/listening.json").write_text(listening(SSH, {**NC, "port": "4444/tcp"}))
    section = capture_exposure.capture(root, declared())
    assert section.data is None
    assert section.unavailable is not None and "listening.json:2: bad port" in section.unavailable


def test_listening_json_linked_outside_is_not_read(root: Root, outside: Path) -> None:
    below(root, "/.nixdrift/listening.json").symlink_to(outside)
    section = capture_exposure.capture(root, declared())
    assert section.data is None and section.unavailable is not None
    assert "symlink" in section.unavailable and SECRET not in section.unavailable


NFT = {
    "nftables": [
        {"metainfo": {"version": "1.0.9", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "nixos-fw", "handle": 1}},
        {
            "chain": {
                "family": "inet",
                "table": "nixos-fw",
                "name": "input",
                "handle": 1,
                "type": "filter",
                "hook": "input",
                "prio": 0,
                "policy": "drop",
            }
        },
    ]
}


def test_nft_json_cut_short_is_unavailable_not_a_disabled_firewall(root: Root) -> None:
    text = json.dumps(NFT)
    assert read_nft_json(text).unreadable is None and read_nft_json(text).records
    below(root, "/.nixdrift/nft.json").write_text(text[: len(text) // 2])
    section = capture_firewall.capture(root, declared(firewall={"enable": True, "backend": "nftables"}))
    assert section.data is None
    assert section.unavailable is not None and "nft.json" in section.unavailable and "not JSON" in section.unavailable


IPTABLES = """*filter
:INPUT ACCEPT [0:0]
:nixos-fw - [0:0]
-A INPUT -j nixos-fw
-A nixos-fw -p tcp --dport 22 -j nixos-fw-accept
-A nixos-fw -j nixos-fw-log-refuse
COMMIT
"""


def test_iptables_save_cut_short_is_unavailable(root: Root) -> None:
    assert read_iptables_save(IPTABLES).unreadable is None
    cut = IPTABLES[: IPTABLES.index("COMMIT")]
    assert (
        read_iptables_save(cut).unreadable == "iptables-save:1: table 'filter' has no COMMIT: the output is cut short"
    )
    below(root, "/.nixdrift/iptables-save.txt").write_text(cut)
    section = capture_firewall.capture(root, declared(firewall={"enable": True, "backend": "iptables"}))
    assert section.data is None
    assert section.unavailable is not None and "no COMMIT" in section.unavailable


def test_a_file_that_is_not_iptables_save_is_unavailable(root: Root) -> None:
    below(root, "/.nixdrift/iptables-save.txt").write_text("root:$6$hash:19000:0:99999:7:::\n")
    section = capture_firewall.capture(root, declared(firewall={"enable": True, "backend": "iptables"}))
    assert section.data is None
    assert section.unavailable is not None and "not iptables-save output" in section.unavailable
    assert "$6$hash" not in section.unavailable


@pytest.mark.parametrize(
    "text",
    ['{"version": 2, "elements": [{"storePaths": ["/nix/store/', "", "[]", '{"version": 2}'],
)
def test_manifest_json_that_cannot_be_read_is_unreadable(text: str) -> None:
    parsed = read_manifest_json(text)
    assert parsed.unreadable is not None and parsed.records == ()


def test_manifest_nix_cut_short_is_unreadable() -> None:
    parsed = read_manifest_nix('[ { name = "hello-1.0"; outPath = "/nix/store/')
    assert parsed.unreadable is not None and "cut short" in parsed.unreadable


# --- users at scale -------------------------------------------------------------------------------


def test_a_33k_group_file_is_compared_group_by_group(root: Root) -> None:
    """33,000 groups (the 1 MB /etc/group that took minutes when each member scanned every group)."""
    n_users, n_groups = 3000, 33000
    users = [f"u{i}" for i in range(n_users)]
    below(root, "/etc/passwd").write_text(
        "".join(f"{u}:x:{1000 + i}:{100000 + i}::/home/{u}:/bin/sh\n" for i, u in enumerate(users))
    )
    below(root, "/etc/group").write_text(
        "".join(f"g{g}:x:{100000 + g}:{users[g % n_users]}\n" for g in range(n_groups))
    )
    section = capture_users.capture(root, declared())
    assert section.data is not None and len(section.data.groups) == n_groups
    findings = compare_users.compare(declared(), section)
    members = {f.id for f in findings if "/member/" in f.id}
    # u0's primary group is g0 (gid 100000): being listed there is no membership drift; in g3000 it is
    assert "users/group/g0/member/u0" not in members
    assert "users/group/g3000/member/u0" in members
    assert len(members) == n_groups - n_users  # every listing but the one in the member's primary group
    unmanaged = [f for f in findings if f.id.startswith("users/user/")]
    assert len(unmanaged) == n_users
    assert unmanaged[0].actual == "uid 1000, group g0 (100000)"  # its primary group found by gid


def test_a_current_system_link_loop_makes_packages_unavailable(root: Root) -> None:
    below(root, "/run/current-system").symlink_to("/run/current-system")
    section = capture_packages.capture(root, declared())
    assert section.data is None
    assert section.unavailable == (
        "the system's or a profile's links cannot be followed: too many levels of symbolic links: /run/current-system"
    )


def _nft_with(rule_expr: list[dict[str, object]]) -> str:
    rule = {"family": "inet", "table": "nixos-fw", "chain": "input", "handle": 9, "expr": rule_expr}
    return json.dumps({"nftables": [*NFT["nftables"], {"rule": rule}]})


DPORT_BAD: dict[str, object] = {
    "match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "nope"}
}


def test_an_accept_rule_that_cannot_be_read_leaves_the_firewall_unjudged(root: Root) -> None:
    # the unread rule may be the port opened by hand: no "ok", no verdict from the other rules
    below(root, "/.nixdrift/nft.json").write_text(_nft_with([DPORT_BAD, {"accept": None}]))
    section = capture_firewall.capture(root, declared(firewall={"enable": True, "backend": "nftables"}))
    assert section.data is None
    assert section.unavailable is not None
    assert "nft.json:4: a rule that accepts traffic cannot be read: not a port: nope" in section.unavailable


def test_a_drop_rule_that_cannot_be_read_is_only_a_problem(root: Root) -> None:
    below(root, "/.nixdrift/nft.json").write_text(_nft_with([DPORT_BAD, {"drop": None}]))
    section = capture_firewall.capture(root, declared(firewall={"enable": True, "backend": "nftables"}))
    assert section.unavailable is None and section.data is not None
    assert section.problems == ("nft.json:4: not a port: nope",)


def test_an_iptables_accept_rule_that_cannot_be_read_leaves_the_firewall_unjudged(root: Root) -> None:
    bad = "-A nixos-fw -p tcp --dport 99999 -j nixos-fw-accept\n"
    below(root, "/.nixdrift/iptables-save.txt").write_text(IPTABLES.replace("COMMIT", bad + "COMMIT"))
    section = capture_firewall.capture(root, declared(firewall={"enable": True, "backend": "iptables"}))
    assert section.data is None and section.unavailable is not None
    assert "iptables-save:7: a rule that accepts traffic cannot be read: bad port range '99999'" in section.unavailable


def test_a_mountinfo_line_that_cannot_be_read_makes_mounts_unavailable(root: Root) -> None:
    # the line lost may be the NFS mount made by hand
    line = "22 1 0:21 / / rw,relatime - ext4 /dev/vda1 rw\n"
    below(root, "/proc/self/mountinfo").write_text(line + "40 22 0:50 / /mnt/nas rw nfs4 nas:/export rw\n")
    section = capture_mounts.capture(root, declared())
    assert section.data is None
    assert section.unavailable == (
        "a line the kernel wrote cannot be read: /proc/self/mountinfo:2: no '-' separator after the optional fields"
    )
