"""Mounts: /proc/self/mountinfo against fileSystems, /proc/swaps against swapDevices.

Pseudo filesystems and what NixOS or systemd mount on every host (/proc, /sys, /dev, /run and its
tmpfs children, /tmp as tmpfs, the read-only /nix/store bind mount, the /etc overlay) are not
drift. A tmpfs anywhere else (/mnt/scratch) is. Devices are compared only when both sides
resolve to a device node; otherwise only the filesystem type is, so that a snapshot without /dev
never reports a by-label device as changed.
"""

from __future__ import annotations

from nixdrift.compare.common import finding, nix_str, printable, sh
from nixdrift.declared.model import DeclaredFileSystem, DeclaredState
from nixdrift.live.mounts import Mount, MountsLive, Swap, declared_device
from nixdrift.models import Category, Finding, Kind, Section

PSEUDO = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs", "bpf",
    "mqueue", "hugetlbfs", "pstore", "efivarfs", "configfs", "fusectl", "autofs", "binfmt_misc", "nsfs",
    "ramfs", "rpc_pipefs", "nfsd", "selinuxfs",
})  # fmt: skip
# /run/nixos-etc-metadata: the erofs image of system.etc.overlay
SYSTEM_TREES = (
    "/proc", "/sys", "/dev", "/run/user", "/run/credentials", "/run/nixos", "/run/netns", "/run/nixos-etc-metadata",
)  # fmt: skip
# container runtimes mount and unmount below these on their own (k3s: /run/k3s, kubelet's pods)
RUNTIME_TREES = (
    "/var/lib/docker", "/var/lib/containers", "/run/docker", "/run/containerd", "/run/k3s", "/var/lib/kubelet",
    "/var/lib/rancher",
)  # fmt: skip
NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "zfs", "9p", "virtiofs", "sshfs"})
_SAME_FS = {"nfs4": "nfs", "ntfs": "fuseblk", "ntfs-3g": "fuseblk", "ntfs3": "fuseblk"}


def _below(path: str, trees: tuple[str, ...]) -> bool:
    return any(path == t or path.startswith(t + "/") for t in trees)


def system_owned(m: Mount) -> bool:
    """Mounts every NixOS host has whatever its fileSystems say."""
    if m.fs_type in PSEUDO or _below(m.mount_point, SYSTEM_TREES + RUNTIME_TREES):
        return True
    if m.fs_type == "tmpfs" and (_below(m.mount_point, ("/run",)) or m.mount_point == "/tmp"):
        return True
    if m.mount_point == "/nix/store":
        return True  # NixOS bind-mounts the store read-only onto itself (unless declared, see below)
    return m.mount_point == "/etc" and m.fs_type == "overlay"  # system.etc.overlay


def _fs_kind(fs_type: str) -> str:
    base = fs_type.removeprefix("fuse.")
    return _SAME_FS.get(base, base)


def _nix_fs(m: Mount) -> str:
    return f"fileSystems.{nix_str(m.mount_point)} = {{ device = {nix_str(m.source)}; fsType = {nix_str(m.fs_type)}; }};"


def _mount_finding(
    rule: str,
    mp: str,
    aspect: str,
    kind: Kind,
    expected: str,
    actual: str,
    *,
    message: str,
    nix: str = "",
    command: str = "",
    evidence: dict[str, str] | None = None,
) -> Finding:
    shown = printable(mp)
    return finding(
        rule_name=rule,
        id=f"mounts/{shown}/{aspect}",
        category=Category.MOUNTS,
        subject=shown,
        kind=kind,
        expected=expected,
        actual=actual,
        message=message,
        nix=nix,
        command=command,
        evidence={"path": mp, **(evidence or {})},
    )


def _unmanaged(m: Mount) -> Finding:
    shown = f"{printable(m.source)} ({printable(m.fs_type)})"
    return _mount_finding(
        "mount-unmanaged", m.mount_point, "mounted", Kind.UNMANAGED, "not mounted", shown,
        message=f"{printable(m.mount_point)} is mounted from {shown} but fileSystems does not declare it.",
        nix=_nix_fs(m), command=sh("umount", m.mount_point),
    )  # fmt: skip


def _same_device(live: MountsLive, fs: DeclaredFileSystem, m: Mount) -> bool:
    want = declared_device(fs.device, fs.label)
    if want is None or "bind" in fs.options or fs.fs_type == "none" or want == m.source:
        return True
    if want.startswith("/dev/") and m.source.startswith("/dev/"):
        a, b = live.devices.get(want), live.devices.get(m.source)
        return a is None or b is None or a == b  # unresolvable: no verdict
    if _fs_kind(fs.fs_type) in NETWORK_FS and not want.startswith("/dev/"):
        return want.rstrip("/") == m.source.rstrip("/")
    return True


def _changed(live: MountsLive, fs: DeclaredFileSystem, m: Mount) -> list[Finding]:
    found: list[Finding] = []
    remount = sh("umount", fs.mount_point) + " && " + sh("mount", fs.mount_point)
    evidence = {"device": printable(m.source), "fstype": printable(m.fs_type)}
    if fs.fs_type not in ("auto", "none") and _fs_kind(fs.fs_type) != _fs_kind(m.fs_type):
        found.append(_mount_finding(
            "mount-changed", fs.mount_point, "fstype", Kind.CHANGED, fs.fs_type, printable(m.fs_type),
            message=f"{printable(fs.mount_point)} is mounted as {printable(m.fs_type)}, declared {fs.fs_type}.",
            nix=_nix_fs(m), command=remount, evidence=evidence,
        ))  # fmt: skip
    if not _same_device(live, fs, m):
        want = declared_device(fs.device, fs.label) or ""
        found.append(_mount_finding(
            "mount-changed", fs.mount_point, "device", Kind.CHANGED, printable(want), printable(m.source),
            message=f"{printable(fs.mount_point)} is mounted from {printable(m.source)}, declared {printable(want)}.",
            nix=_nix_fs(m), command=remount, evidence=evidence,
        ))  # fmt: skip
    return found


def _missing(fs: DeclaredFileSystem) -> list[Finding]:
    if "noauto" in fs.options or "x-systemd.automount" in fs.options:
        return []  # mounted on demand, if ever
    want = declared_device(fs.device, fs.label) or fs.fs_type
    return [_mount_finding(
        "mount-missing", fs.mount_point, "mounted", Kind.MISSING, f"{printable(want)} ({fs.fs_type})", "not mounted",
        message=f"{printable(fs.mount_point)} is declared in fileSystems but not mounted.",
        command=sh("mount", fs.mount_point),
    )]  # fmt: skip


def _swap_matches(live: MountsLive, want: str, swap: Swap) -> bool:
    if want == swap.filename:
        return True
    a, b = live.devices.get(want), live.devices.get(swap.filename)
    return a is not None and a == b


def _swaps(declared: DeclaredState, live: MountsLive) -> list[Finding]:
    if live.swaps is None:
        return []
    wanted = [d for s in declared.swap_devices if (d := declared_device(s.device, s.label))]
    unmatched = [s for s in live.swaps if not s.filename.startswith("/dev/zram")]  # zramSwap's own
    for want in wanted:
        hit = next((s for s in unmatched if _swap_matches(live, want, s)), None)
        if hit is None:  # unresolvable, or an encrypted mapping (/dev/dm-N) of it: no verdict on one swap
            unresolved = want not in live.devices or want.startswith("/dev/mapper/")
            hit = next((s for s in unmatched if unresolved or s.filename.startswith("/dev/dm-")), None)
        if hit is not None:
            unmatched.remove(hit)
    return [
        finding(
            rule_name="swap-unmanaged",
            id=f"mounts/swap:{printable(s.filename)}/active",
            category=Category.MOUNTS,
            subject=f"swap {printable(s.filename)}",
            kind=Kind.UNMANAGED,
            expected="inactive",
            actual=f"active ({printable(s.kind)})",
            message=f"Swap on {printable(s.filename)} is active but swapDevices does not declare it.",
            nix=f"swapDevices = [ {{ device = {nix_str(s.filename)}; }} ];",
            command=sh("swapoff", s.filename),
            evidence={"path": "/proc/swaps", "device": printable(s.filename)},
        )
        for s in unmatched
    ]


def compare(declared: DeclaredState, live: Section[MountsLive]) -> tuple[Finding, ...]:
    data = live.data
    if data is None:
        return ()
    top: dict[str, Mount] = {}
    for m in data.mounts:
        top[m.mount_point] = m  # the last mount on a path hides the ones below it
    findings: list[Finding] = []
    for mp, m in sorted(top.items()):
        fs = declared.file_systems.get(mp)
        if fs is not None:
            findings.extend(_changed(data, fs, m))
        elif not system_owned(m):
            findings.append(_unmanaged(m))
    for mp, fs in declared.file_systems.items():
        if mp not in top:
            findings.extend(_missing(fs))
    return tuple(findings + _swaps(declared, data))
