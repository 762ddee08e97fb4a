"""Every NixOS layout (issue 10): classic /etc or system.etc.overlay (mutable or immutable), accounts
by update-users-groups.pl, userborn or systemd-sysusers, scripted activation or nixos-init.

Each host is built with real nix, its /etc is a real overlayfs mounted in this process's private
mount namespace (lower: the metadata layer, `/etc-basedir` as a data-only layer, upper
`/.rw-etc/upper` when mutable), the drift is planted with the real tools where the layout lets them
run (useradd and usermod over the host's /etc in `unshare -m`; nft in `unshare -n`, loading the
ruleset firewall-nftables.nix writes), and the scan must find each change with its rule's severity.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostscan import describe, scan
from nixdrift import pipeline
from nixdrift.demo.hostbuilder import HostTree
from nixdrift.demo.planters import BuiltHost
from nixdrift.models import Category, Finding, Report, Severity
from nixdrift.pipeline import ScanOptions
from nixdrift.rootfs import Root
from nixdrift.snapshot import take

pytestmark = [
    pytest.mark.nix,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "useradd", "usermod", "nft", "mount")),
        reason="needs root, unshare, mount, nft and shadow-utils",
    ),
]

LAYOUTS = (
    ("classic", "perl", "scripted"),
    ("classic", "userborn", "scripted"),
    ("overlay", "userborn", "nixos-init"),
    ("overlay", "sysusers", "scripted"),
    ("overlay-immutable", "userborn", "nixos-init"),
    ("overlay-immutable", "sysusers", "nixos-init"),
)

# firewall-nftables.nix's table for allowedTCPPorts = [ 22 ] (the nftables-rules script's shape)
NIXOS_FW = """\
table inet nixos-fw {
  set temp-ports {
    comment "Temporarily opened ports"
    type inet_proto . inet_service
    flags interval
    auto-merge
  }
  chain input {
    type filter hook input priority filter; policy drop;
    iifname { "lo" } accept comment "trusted interfaces"
    ct state vmap {
      invalid : drop, established : accept, related : accept,
      new : jump input-allow, untracked : jump input-allow,
    }
  }
  chain input-allow {
    tcp dport { 22 } accept
    meta l4proto . th dport @temp-ports accept
    icmp type echo-request accept comment "allow ping"
  }
}
"""


def declare(base: Path, etc: str, accounts: str, init: str) -> HostTree:
    host = HostTree(base, name="web1", etc=etc, accounts=accounts, init=init)
    if accounts == "sysusers":  # sysusers.nix: systemd-sysusers makes system users only
        host.with_user("svc", system=True, groups=["video"])
    else:
        host.with_user("alice", groups=["video"])
    host.with_etc_file("motd", "Managed by NixOS.\n")
    host.with_etc_copy("sudoers.d/10-deploy", "alice ALL=(ALL) NOPASSWD: /run/current-system/sw/bin/systemctl\n")
    host.with_firewall(tcp=[22], backend="nftables")
    return host


@pytest.fixture(params=LAYOUTS, ids=["-".join(p) for p in LAYOUTS])
def built(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BuiltHost]:
    etc, accounts, init = request.param
    host = declare(tmp_path / "host", etc, accounts, init).build()
    with host.mounted_etc():  # a real overlay on overlay layouts, unmounted at the end
        real_nft(host)
        yield host


def real_nft(host: BuiltHost, *commands: str) -> None:
    """Load NixOS's ruleset into a network namespace of its own, run the commands there and keep
    what `nft -j list ruleset` says as the host's captured ruleset."""
    out = host.root / ".nixdrift" / "nft.json"
    script = "\n".join(["set -eu", "nft -f - <<'EOF'", NIXOS_FW + "EOF", *commands, f"nft -j list ruleset > {out}"])
    proc = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def shadow_utils(host: BuiltHost, *commands: str) -> subprocess.CompletedProcess[str]:
    """Run the real shadow-utils with the host's /etc (the overlay, where it is one) and /home bound
    over this machine's, and an empty /var (useradd would reset this machine's lastlog records)."""
    (host.root / "home").mkdir(exist_ok=True)
    script = "\n".join(
        [
            "set -eu",
            "mount --make-rprivate /",
            f"mount --bind {host.root}/etc /etc",
            f"mount --bind {host.root}/home /home",
            "mount -t tmpfs tmpfs /var",
            *commands,
        ]
    )
    return subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=60)


def layout_of(host: BuiltHost) -> dict[str, str]:
    d = host.tree.decl
    return {"etc": d.etc_layout, "accounts": d.accounts, "init": d.init, "live": "as declared"}


def by_id(report: Report) -> dict[str, Finding]:
    return {f.id: f for f in report.findings}


def test_clean_host_of_each_layout_reports_nothing_and_names_its_layout(built: BuiltHost) -> None:
    report = scan(built)
    assert not report.findings, describe(report.findings)
    assert report.layout == layout_of(built)
    assert report.to_json()["layout"] == layout_of(built)
    for category in (Category.ETC, Category.USERS, Category.FIREWALL):
        assert report.categories[category] == "ok"
    if built.overlay and shutil.which("mkfs.erofs"):  # the metadata layer is a real erofs image here
        mounts = [line.split(" ") for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        lower = str(built.root / "run" / "nixos-etc-metadata")
        assert any(m[4] == lower and m[m.index("-") + 1] == "erofs" for m in mounts)


def plant_etc(host: BuiltHost) -> dict[str, Severity]:
    """A new file, an edited managed link, an edited managed copy (sudoers.d) and a deleted managed
    file; on a read-only /etc each write must fail, and something mounted over a file is the drift."""
    if host.tree.decl.etc_layout == "overlay-immutable":
        for act in (
            lambda: host.add_etc_file("hosts.allow", "ALL: ALL\n"),
            lambda: host.edit_etc("motd", "edited\n"),
            lambda: host.remove_etc("bashrc"),
        ):
            with pytest.raises(OSError) as caught:
                act()
            assert caught.value.errno == errno.EROFS
        host.bind_over_etc("motd", "Back at 5.\n")  # the way round a read-only /etc
        assert (host.root / "etc" / "motd").read_text() == "Back at 5.\n"
        # the mounts category sees the same mount point (a mount the flake does not declare)
        return {"etc/motd/mount": Severity.HIGH, "mounts//etc/motd/mounted": Severity.MEDIUM}
    host.add_etc_file("hosts.allow", "ALL: ALL\n")
    host.edit_etc("motd", "Back at 5.\n")
    host.edit_etc("sudoers.d/10-deploy", "alice ALL=(ALL) NOPASSWD: ALL\n")
    host.remove_etc("bashrc")
    return {
        "etc/hosts.allow": Severity.MEDIUM,
        "etc/motd": Severity.MEDIUM,
        "etc/sudoers.d/10-deploy": Severity.HIGH,
        "etc/bashrc": Severity.MEDIUM,
    }


def plant_accounts(host: BuiltHost) -> dict[str, Severity]:
    """useradd mallory && usermod -aG wheel mallory with the real tools; on a read-only /etc they
    cannot run (they write lock files in /etc), so the backing file is edited instead."""
    proc = shadow_utils(host, "useradd -M mallory", "usermod -aG wheel mallory")
    if host.tree.decl.etc_layout == "overlay-immutable":
        assert proc.returncode != 0, "shadow-utils wrote to a read-only /etc"
        host.add_user("mallory", groups=("wheel",))
    else:
        assert proc.returncode == 0, proc.stderr
    return {"users/user/mallory": Severity.MEDIUM, "users/group/wheel/member/mallory": Severity.CRITICAL}


def test_each_planted_change_is_found_with_its_severity(built: BuiltHost) -> None:
    wanted = {**plant_etc(built), **plant_accounts(built)}
    # a port opened by hand in nixos-fw, and one opened with nixos-firewall-tool's own command
    real_nft(
        built,
        "nft add rule inet nixos-fw input-allow tcp dport 8080 accept",
        "nft add element inet nixos-fw temp-ports '{ tcp . 8888 }'",
    )
    wanted |= {"firewall/tcp/8080": Severity.CRITICAL, "firewall/tcp/8888": Severity.LOW}

    report = scan(built)
    found = by_id(report)
    got = {fid: found[fid].severity for fid in wanted if fid in found}
    assert got == wanted, describe(report.findings)
    extra = sorted(set(found) - set(wanted))
    assert not extra, describe([found[f] for f in extra])
    assert report.layout == layout_of(built)

    temp = found["firewall/tcp/8888"]
    assert temp.fix.command == "nft delete element inet nixos-fw temp-ports '{ tcp . 8888 }'"
    assert "nixos-firewall-tool" in temp.message
    member = found["users/group/wheel/member/mallory"]
    if built.tree.decl.etc_layout == "overlay-immutable":
        assert member.fix.command == ""  # no shadow-utils advice where /etc is read-only
        assert "read-only" in member.fix.reason
    else:
        assert member.fix.command == "gpasswd -d mallory wheel"
    if built.tree.decl.etc_layout == "overlay":  # the upper directory says how each file changed
        assert "copy-up" in found["etc/sudoers.d/10-deploy"].evidence["overlay"]
        assert "new since boot" in found["etc/hosts.allow"].evidence["overlay"]
        assert "whiteout" in found["etc/bashrc"].message
        assert found["etc/bashrc"].fix.command.startswith("ln -sfn /nix/store/")  # no /etc/static here
        assert found["etc/motd"].fix.command.startswith("ln -sfn /nix/store/")


def test_etc_not_mounted_as_declared_is_a_layout_finding(tmp_path: Path) -> None:
    """The flake declares an immutable overlay; someone mounted a writable overlay on /etc."""
    host = declare(tmp_path / "host", "overlay-immutable", "userborn", "nixos-init").build()
    host.mount_over_etc()
    with host.mounted_etc():
        report = scan(host)
    layout = by_id(report)["etc/layout"]
    assert layout.severity is Severity.HIGH
    assert "read-write" in layout.message
    assert (layout.expected, layout.actual) == ("overlay-immutable", "overlay")
    assert report.layout["live"] == "etc overlay, accounts userborn"


def test_classic_host_declared_as_overlay_is_a_layout_finding(tmp_path: Path) -> None:
    """A flake that turns system.etc.overlay on, deployed on a host still running setup-etc.pl's /etc
    (not rebooted into the new layout): the report says so instead of listing every file."""
    classic = declare(tmp_path / "classic", "classic", "userborn", "scripted").build()
    overlay = declare(tmp_path / "overlay", "overlay", "userborn", "scripted")
    overlay.write_flake(classic.flake)  # the same host's flake, now declaring the overlay
    report = scan(classic)
    layout = by_id(report)["etc/layout"]
    assert (layout.severity, layout.expected) == (Severity.HIGH, "overlay")
    assert "not a mount point" in layout.message


def test_etc_mounted_from_another_metadata_image_is_a_layout_finding(tmp_path: Path) -> None:
    """initrd-find-etc links /etc-metadata-image to the generation's image: another one means /etc
    is not the declared generation's (an older image, or one built elsewhere)."""
    host = declare(tmp_path / "host", "overlay-immutable", "sysusers", "nixos-init").build()
    link = host.root / "etc-metadata-image"
    declared_image = os.readlink(link)
    other = "/nix/store/" + "0" * 32 + "-etc-metadata.erofs"
    link.unlink()
    link.symlink_to(other)
    with host.mounted_etc():
        found = by_id(scan(host))
    image = found["etc/layout/metadata-image"]
    assert (image.severity, image.expected, image.actual) == (Severity.HIGH, declared_image, other)


def test_accounts_kept_by_another_backend_is_a_layout_finding(tmp_path: Path) -> None:
    """The flake moves to userborn; the host still has update-users-groups.pl's records only."""
    classic = declare(tmp_path / "classic", "classic", "perl", "scripted").build()
    declare(tmp_path / "userborn", "classic", "userborn", "scripted").write_flake(classic.flake)
    found = by_id(scan(classic))
    layout = found["users/layout"]
    assert (layout.severity, layout.expected, layout.actual) == (Severity.HIGH, "userborn", "perl")
    assert "etc/layout" not in found  # /etc is as declared: classic


def test_snapshot_of_an_immutable_host_holds_its_accounts_without_hashes(tmp_path: Path) -> None:
    """/etc/passwd, group and shadow are links into /var/lib/nixos on an immutable /etc: a snapshot
    keeps the files they link to (shadow redacted), so it checks like the host."""
    tree = declare(tmp_path / "host", "overlay-immutable", "userborn", "nixos-init")
    host = tree.with_user("carol", hashed_password=True).with_mutable_users(False).build()
    out = tmp_path / "snap"
    with host.mounted_etc():
        real_nft(host)
        on_host = scan(host)
        take(out, host.name, Root.of(host.root), warn=pytest.fail)
    (out / ".nixdrift" / "nft.json").write_bytes((host.root / ".nixdrift" / "nft.json").read_bytes())
    for name in ("units.json", "listening.json"):
        (out / ".nixdrift" / name).write_bytes((host.root / ".nixdrift" / name).read_bytes())
    assert os.readlink(out / "etc" / "shadow") == "/var/lib/nixos/shadow"
    shadow = (out / "var/lib/nixos/shadow").read_text()
    assert "carol:" in shadow and "not-a-real-hash" not in shadow
    assert "not-a-real-hash" in (host.root / "var/lib/nixos/shadow").read_text()  # the test means something
    in_snapshot = _scan_root(host, out)
    assert in_snapshot.categories[Category.USERS] == on_host.categories[Category.USERS] == "ok"
    assert not [f for f in in_snapshot.findings if f.category is Category.USERS]


def _scan_root(host: BuiltHost, root: Path) -> Report:
    return pipeline.scan(ScanOptions(flake=str(host.flake), host=host.name, root=Root.of(root)))


def test_every_path_the_etc_capture_reads_on_an_overlay_is_watched_or_polled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The category table covers what the etc collector reads on an overlay host too: the mount
    table, the metadata image's link and the upper directory (traced through Root)."""
    from nixdrift.categories import TABLE
    from unit.test_watch_paths import IMMUTABLE_OR_CAPTURED, covered, trace_reads

    host = declare(tmp_path / "host", "overlay", "sysusers", "scripted").build()
    with host.mounted_etc():
        host.add_etc_file("hosts.allow", "ALL: ALL\n")  # something in the upper directory to classify
        declared = pipeline.load_declared(ScanOptions(flake=str(host.flake), host=host.name, root=Root.of(host.root)))
        seen = trace_reads(monkeypatch)
        section = pipeline.capture(Root.of(host.root), declared, [Category.ETC])[Category.ETC]
    assert section.data is not None and section.data.overlay is not None
    assert section.data.overlay.upper  # the upper directory was read
    read = {p for p in seen if not p.startswith(IMMUTABLE_OR_CAPTURED)}
    assert "/proc/self/mountinfo" in read and "/etc-metadata-image" in read
    assert not sorted(p for p in read if not covered(TABLE[Category.ETC], p))


@pytest.mark.parametrize("name", ["bashless", "immutable"])
def test_demo_runs_on_a_modern_layout(name: str, tmp_path: Path) -> None:
    """`nixdrift demo --layout`: the demo host on the layout, its planted drift found, the layout said."""
    argv = [
        sys.executable,
        "-m",
        "nixdrift",
        "demo",
        "--layout",
        name,
        "--format",
        "json",
        "--keep",
        str(tmp_path / "d"),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    want = {
        "bashless": ("overlay", "userborn", "nixos-init"),
        "immutable": ("overlay-immutable", "userborn", "nixos-init"),
    }
    assert (report["layout"]["etc"], report["layout"]["accounts"], report["layout"]["init"]) == want[name]
    assert report["layout"]["live"] == "as declared"
    ids = {f["id"] for f in report["findings"]}
    assert {"users/user/mallory", "users/group/wheel/member/mallory", "packages/alice/cowsay"} <= ids
    if name == "immutable":  # /etc is read-only: the /etc drifts cannot be planted, and the demo says so
        assert "not planted" in proc.stderr and not any(i.startswith("etc/") for i in ids)
    else:
        assert {"etc/motd", "etc/sudoers.d/99-mallory"} <= ids


def test_directory_deleted_and_recreated_on_the_overlay_is_an_opaque_directory(tmp_path: Path) -> None:
    """`rm -r /etc/sudoers.d && mkdir /etc/sudoers.d`: overlayfs hides the lower directory with an
    opaque upper one; the declared files below it are missing, and the finding says how."""
    host = declare(tmp_path / "host", "overlay", "userborn", "nixos-init").build()
    with host.mounted_etc() as etc:
        real_nft(host)
        shutil.rmtree(etc / "sudoers.d")
        (etc / "sudoers.d").mkdir()
        host.add_etc_file("sudoers.d/90-mine", "mallory ALL=(ALL) ALL\n", 0o440)
        found = by_id(scan(host))
    assert os.getxattr(host.root / ".rw-etc" / "upper" / "sudoers.d", "trusted.overlay.opaque") == b"y"
    missing = found["etc/sudoers.d/10-deploy"]
    assert missing.severity is Severity.HIGH  # sudoers: etc-sensitive
    assert "opaque directory" in missing.message
    assert found["etc/sudoers.d/90-mine"].severity is Severity.HIGH
    assert "new since boot" in found["etc/sudoers.d/90-mine"].evidence["overlay"]
