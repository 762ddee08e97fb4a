"""Mounts: a NixOS host's mountinfo and swaps against fileSystems and swapDevices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nixdrift.capture import mounts as capture_mounts
from nixdrift.capture.mounts import parse_mountinfo, parse_swaps
from nixdrift.compare import mounts as compare_mounts
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Finding, FlakeInfo, Kind, Severity
from nixdrift.rootfs import Root

# /proc/self/mountinfo of a NixOS VM: / and /boot from fileSystems, everything else NixOS and
# systemd mount on every host (special filesystems, /run/wrappers, /run/keys, the store bind mount)
MOUNTINFO = """\
22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
23 28 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
24 28 0:5 / /dev rw,nosuid shared:8 - devtmpfs devtmpfs rw,size=401428k,nr_inodes=1001814,mode=755
25 24 0:23 / /dev/pts rw,nosuid,noexec,relatime shared:9 - devpts devpts rw,gid=3,mode=620,ptmxmode=666
26 24 0:24 / /dev/shm rw,nosuid,nodev shared:10 - tmpfs tmpfs rw
27 28 0:25 / /run rw,nosuid,nodev shared:11 - tmpfs tmpfs rw,size=2007128k,mode=755
28 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
29 27 0:26 / /run/wrappers rw,nodev,relatime shared:13 - tmpfs tmpfs rw,mode=755
30 28 253:1 /nix/store /nix/store ro,relatime shared:14 - ext4 /dev/vda1 rw
31 23 0:6 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:3 - securityfs securityfs rw
32 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
33 23 0:28 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:5 - pstore pstore rw
34 23 0:29 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:7 - bpf bpf rw,mode=700
35 27 0:30 / /run/keys rw,nosuid,nodev,relatime shared:15 - ramfs none rw,mode=750
36 24 0:20 / /dev/mqueue rw,nosuid,nodev,noexec,relatime shared:16 - mqueue mqueue rw
37 24 0:31 / /dev/hugepages rw,nosuid,nodev,relatime shared:17 - hugetlbfs hugetlbfs rw,pagesize=2M
38 28 253:2 / /boot rw,relatime shared:19 - vfat /dev/vda2 rw,fmask=0022,dmask=0022,errors=remount-ro
40 22 0:32 / /proc/sys/fs/binfmt_misc rw,nosuid,nodev,noexec,relatime shared:20 - binfmt_misc binfmt_misc rw
41 23 0:33 / /sys/fs/fuse/connections rw,nosuid,nodev,noexec,relatime shared:21 - fusectl fusectl rw
43 27 0:35 / /run/user/1000 rw,nosuid,nodev,relatime shared:23 - tmpfs tmpfs rw,size=401424k,mode=700,uid=1000
44 27 0:36 / /run/credentials/systemd-journald.service ro,nosuid,nodev,noexec shared:24 - tmpfs tmpfs rw,mode=700
"""
SWAPS = (
    "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    "/dev/vda3                               partition\t1048572\t\t0\t\t-2\n"
)


def declared(extra: dict[str, Any] | None = None, swaps: list[dict[str, Any]] | None = None) -> DeclaredState:
    fss = {
        "/": {"device": "/dev/disk/by-label/nixos", "fsType": "ext4"},
        "/boot": {"device": "/dev/disk/by-label/boot", "fsType": "vfat"},
        **(extra or {}),
    }
    raw = {
        "fileSystems": {mp: {"mountPoint": mp, **fs} for mp, fs in fss.items()},
        "swapDevices": [{"label": "swap"}] if swaps is None else swaps,
    }
    return DeclaredState.from_json("web", FlakeInfo(reference="/etc/nixos"), raw)


def host(root: Path, mountinfo: str = MOUNTINFO, swaps: str | None = SWAPS, devices: bool = False) -> Root:
    """A snapshot: mountinfo and swaps copied, and (when `devices`) udev's /dev/disk links."""
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "self" / "mountinfo").write_text(mountinfo)
    if swaps is not None:
        (root / "proc" / "swaps").write_text(swaps)
    if devices:
        (root / "dev" / "disk" / "by-label").mkdir(parents=True)
        for name, label in (("vda1", "nixos"), ("vda2", "boot"), ("vda3", "swap"), ("vdb1", "data")):
            (root / "dev" / name).write_text("")
            (root / "dev" / "disk" / "by-label" / label).symlink_to(f"../../{name}")
    return Root.of(root)


def check(root: Root, decl: DeclaredState | None = None) -> dict[str, Finding]:
    decl = decl or declared()
    section = capture_mounts.capture(root, decl)
    assert section.unavailable is None and section.problems == ()
    return {f.id: f for f in compare_mounts.compare(decl, section)}


def test_host_as_declared_has_no_drift(tmp_path: Path) -> None:
    assert check(host(tmp_path)) == {}


def test_host_as_declared_with_device_links_has_no_drift(tmp_path: Path) -> None:
    assert check(host(tmp_path, devices=True)) == {}


def test_nfs_mounted_by_hand_is_unmanaged(tmp_path: Path) -> None:
    line = "50 28 0:40 / /mnt/backup rw,relatime shared:30 - nfs4 nas:/export/backup rw,vers=4.2,addr=10.0.0.2\n"
    f = check(host(tmp_path, MOUNTINFO + line))["mounts//mnt/backup/mounted"]
    assert (f.kind, f.severity, f.actual) == (Kind.UNMANAGED, Severity.MEDIUM, "nas:/export/backup (nfs4)")
    assert f.fix.command == "umount /mnt/backup"
    assert f.fix.nix == 'fileSystems."/mnt/backup" = { device = "nas:/export/backup"; fsType = "nfs4"; };'


def test_tmpfs_mounted_by_hand_outside_system_places_is_reported(tmp_path: Path) -> None:
    line = "51 28 0:41 / /mnt/scratch\\040space rw,relatime shared:31 - tmpfs tmpfs rw,size=1g\n"
    found = check(host(tmp_path, MOUNTINFO + line))
    assert list(found) == ["mounts//mnt/scratch space/mounted"]
    assert found["mounts//mnt/scratch space/mounted"].fix.command == "umount '/mnt/scratch space'"


def test_container_runtimes_and_the_etc_overlay_are_not_drift(tmp_path: Path) -> None:
    lines = (
        "60 28 0:50 / /run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw\n"
        "61 28 0:51 / /var/lib/kubelet/pods/0f0f/volumes/kubernetes.io~projected/kube-api rw - tmpfs tmpfs rw\n"
        "62 28 7:0 / /run/nixos-etc-metadata ro,relatime - erofs /dev/loop0 ro\n"
    )
    assert check(host(tmp_path, MOUNTINFO + lines)) == {}


def test_declared_mount_missing(tmp_path: Path) -> None:
    decl = declared({"/data": {"device": "/dev/disk/by-label/data", "fsType": "xfs"}})
    f = check(host(tmp_path), decl)["mounts//data/mounted"]
    assert (f.kind, f.expected, f.fix.command) == (Kind.MISSING, "/dev/disk/by-label/data (xfs)", "mount /data")


def test_noauto_and_automount_are_not_missing(tmp_path: Path) -> None:
    decl = declared({
        "/media/usb": {"device": "/dev/disk/by-label/usb", "fsType": "vfat", "options": ["noauto"]},
        "/srv/nfs": {"device": "nas:/srv", "fsType": "nfs", "options": ["x-systemd.automount"]},
    })  # fmt: skip
    assert check(host(tmp_path), decl) == {}


def test_fstype_changed(tmp_path: Path) -> None:
    f = check(host(tmp_path, MOUNTINFO.replace("- vfat /dev/vda2", "- exfat /dev/vda2")))["mounts//boot/fstype"]
    assert (f.expected, f.actual, f.severity) == ("vfat", "exfat", Severity.LOW)


def test_device_changed_is_found_when_links_resolve(tmp_path: Path) -> None:
    root = host(tmp_path, MOUNTINFO.replace("- vfat /dev/vda2", "- vfat /dev/vdb1"), devices=True)
    f = check(root)["mounts//boot/device"]
    assert (f.expected, f.actual) == ("/dev/disk/by-label/boot", "/dev/vdb1")


def test_device_is_not_judged_when_links_cannot_resolve(tmp_path: Path) -> None:
    assert check(host(tmp_path, MOUNTINFO.replace("- vfat /dev/vda2", "- vfat /dev/vdb1"))) == {}


def test_swap_turned_on_by_hand(tmp_path: Path) -> None:
    swaps = SWAPS + "/swap\\040file                         file\t\t524284\t\t0\t\t-3\n"
    found = check(host(tmp_path, swaps=swaps, devices=True))
    f = found["mounts/swap:/swap file/active"]
    assert list(found) == ["mounts/swap:/swap file/active"]
    assert f.fix.command == "swapoff '/swap file'"


def test_swap_without_a_declaration_is_unmanaged_even_without_dev(tmp_path: Path) -> None:
    assert list(check(host(tmp_path), declared(swaps=[]))) == ["mounts/swap:/dev/vda3/active"]


def test_zram_swap_is_not_drift(tmp_path: Path) -> None:
    swaps = SWAPS + "/dev/zram0                              partition\t4194300\t\t0\t\t5\n"
    assert check(host(tmp_path, swaps=swaps)) == {}


def test_snapshot_without_mountinfo_is_unavailable(tmp_path: Path) -> None:
    assert capture_mounts.capture(Root.of(tmp_path), declared()).unavailable is not None


def test_live_mountinfo_is_read() -> None:
    section = capture_mounts.capture(Root(), declared())
    assert section.data is not None
    assert any(m.mount_point == "/" for m in section.data.mounts)


def test_mountinfo_parser_unescapes_and_skips_optional_fields() -> None:
    line = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 shared:2 - ext3 /dev/my\\134disk rw,errors=continue"
    (m,), problems = parse_mountinfo(line + "\nbroken line\n")
    assert (m.mount_point, m.root, m.fs_type, m.source) == ("/mnt/a b", "/mnt1", "ext3", "/dev/my\\disk")
    assert problems == ("/proc/self/mountinfo:2: no '-' separator after the optional fields",)


def test_swaps_parser() -> None:
    swaps, problems = parse_swaps(SWAPS + "garbage\n")
    assert [(s.filename, s.kind) for s in swaps] == [("/dev/vda3", "partition")]
    assert problems == ("/proc/swaps:3: not a swap line",)


@given(st.text())
def test_mount_parsers_never_raise_on_text(text: str) -> None:
    parse_mountinfo(text)
    parse_mountinfo(MOUNTINFO + text)
    parse_swaps(text)


@given(st.binary())
def test_mount_parsers_never_raise_on_bytes(data: bytes) -> None:
    text = data.decode("utf-8", errors="surrogateescape")
    parse_mountinfo(text)
    parse_swaps(text)


_field = st.text(alphabet=st.sampled_from("0123456789abc/:-\\ ,"), max_size=12)


@given(st.lists(_field, min_size=0, max_size=14))
def test_mountinfo_parser_never_raises_on_mountinfo_like_lines(fields: list[str]) -> None:
    parse_mountinfo(" ".join(fields))
