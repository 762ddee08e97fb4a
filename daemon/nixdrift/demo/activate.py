"""Lay out a host's root tree exactly as NixOS activation leaves it, from a built toplevel.

Mirrors the activation scripts: setup-etc.pl (/etc/static, managed symlinks, copies listed in
/etc/.clean), update-users-groups.pl (/etc/passwd, group, shadow and /var/lib/nixos maps, with its
uid/gid allocation), the system profile and /run/{current,booted}-system links, resolvconf's
/etc/resolv.conf; and the kernel's view (/proc/self/mountinfo with the usual pseudo filesystems).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nixdrift.demo import captured
from nixdrift.demo.captured import Firewall, LiveState, Mount
from nixdrift.demo.hostbuilder import Listener
from nixdrift.process import run


def symlink(root: Path, host_path: str, target: str) -> None:
    where = root / host_path.lstrip("/")
    where.parent.mkdir(parents=True, exist_ok=True)
    if where.is_symlink() or where.exists():
        where.unlink()
    where.symlink_to(target)


def _chown(path: Path, uid: int, gid: int) -> None:
    with contextlib.suppress(OSError):  # not root: ownership is best effort in a fixture
        os.lchown(path, uid, gid)


def _static_entries(static: str, into: Path) -> Iterator[tuple[str, Path, str | None]]:
    """The links of an etc tree in the store, in order, as (path below /etc, the link, its `.mode`
    sidecar's word or None); its directories are made below `into` on the way."""
    for dirpath, dirnames, filenames in os.walk(static):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, static)
        for name in sorted([*dirnames, *filenames]):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            source = Path(dirpath, name)
            if not source.is_symlink():
                if source.is_dir():
                    (into / rel).mkdir(parents=True, exist_ok=True)
                continue
            mode_file = Path(dirpath, name + ".mode")
            yield rel, source, mode_file.read_text().strip() if mode_file.exists() else None


def _copy(source: Path, target: Path, mode: str) -> None:
    """A managed copy: the content, the `.mode` and the owner of the `.uid` and `.gid` sidecars."""
    shutil.copyfile(source, target)
    os.chmod(target, int(mode, 8))
    uid = Path(f"{source}.uid").read_text().strip()
    gid = Path(f"{source}.gid").read_text().strip()
    _chown(target, _id(uid), _id(gid))


def setup_etc(root: Path, static: str) -> list[str]:
    """setup-etc.pl: /etc/static, a /etc symlink per entry, copies for entries with a .mode."""
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    symlink(root, "/etc/static", static)
    copied: list[str] = []
    for rel, source, mode in _static_entries(static, etc):
        if mode is None:
            symlink(root, f"/etc/{rel}", f"/etc/static/{rel}")
            continue
        if mode == "direct-symlink":
            symlink(root, f"/etc/{rel}", os.readlink(source))
        else:
            _copy(source, etc / rel, mode)
        copied.append(rel)
    (etc / ".clean").write_text("".join(f"{fn}\n" for fn in sorted(copied)))
    (etc / "NIXOS").touch()
    return copied


# ---- system.etc.overlay (etc-activation.nix) ----
OVERLAY_METADATA = "/run/nixos-etc-metadata"
OVERLAY_UPPER = "/.rw-etc/upper"
OVERLAY_WORK = "/.rw-etc/work"


def setup_etc_metadata(root: Path, static: str) -> None:
    """The lower layer as the erofs metadata image presents it (build-composefs-dump.py): a link
    straight to its store source for every `symlink` and `direct-symlink` entry, a regular file with
    the entry's mode and owner for every copy, directories 0755. The fixture keeps it as a plain
    directory below ROOT/run/nixos-etc-metadata holding the copies' content (on NixOS the content
    comes from the data-only layer /etc-basedir)."""
    lower = root / OVERLAY_METADATA.lstrip("/")
    lower.mkdir(parents=True, exist_ok=True)
    for rel, source, mode in _static_entries(static, lower):
        if mode in (None, "symlink", "direct-symlink"):
            (lower / rel).symlink_to(os.readlink(source))
        else:
            _copy(source, lower / rel, mode)
    for d in (OVERLAY_UPPER, OVERLAY_WORK):
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True, mode=0o755)
    (root / "etc").mkdir(parents=True, exist_ok=True)  # the mount point


def metadata_image(root: Path) -> Path:
    """Where the fixture keeps its erofs image of the metadata layer (beside the root, not in it)."""
    return root.parent / "etc-metadata.erofs"


def build_metadata_image(root: Path) -> Path | None:
    """The metadata layer as a real erofs image (mkfs.erofs from Debian's erofs-utils), as NixOS
    mounts /etc-metadata-image at /run/nixos-etc-metadata; None without mkfs.erofs (the plain
    directory is then the lower layer)."""
    mkfs = shutil.which("mkfs.erofs")
    if mkfs is None:
        return None
    image = metadata_image(root)
    run([mkfs, "--quiet", str(image), str(root / OVERLAY_METADATA.lstrip("/"))], timeout=300)
    return image


def overlay_options(root: Path, mutable: bool) -> str:
    """The overlay's mount options on this machine (lower, upper and work below ROOT)."""
    # as etc-activation.nix mounts it: /etc-basedir is a data-only layer (after `::`), never merged
    lower = f"lowerdir={root / OVERLAY_METADATA.lstrip('/')}::{root / 'etc-basedir'}"
    if not mutable:
        return f"ro,{lower}"
    upper = root / OVERLAY_UPPER.lstrip("/")
    work = root / OVERLAY_WORK.lstrip("/")
    return f"rw,{lower},upperdir={upper},workdir={work}"


def overlay_mounts(mutable: bool, next_id: int) -> list[Mount]:
    """/run/nixos-etc-metadata (erofs) and /etc (overlay) as the initrd mounted them, in mountinfo."""
    lower = "lowerdir=/run/nixos-etc-metadata::/etc-basedir"
    layer = ",upperdir=/sysroot/.rw-etc/upper,workdir=/sysroot/.rw-etc/work" if mutable else ""
    super_opts = f"{'rw' if mutable else 'ro'},{lower}{layer},redirect_dir=on,metacopy=on"
    return [
        Mount(
            next_id,
            22,
            "7:0",
            "/",
            OVERLAY_METADATA,
            "ro,nosuid,nodev,relatime",
            "shared:90",
            "erofs",
            "/dev/loop0",
            "ro,user_xattr,acl,cache_strategy=readaround",
        ),
        Mount(
            next_id + 1,
            22,
            "0:91",
            "/",
            "/etc",
            f"{'rw' if mutable else 'ro'},nosuid,nodev,relatime",
            "shared:91",
            "overlay",
            "overlay",
            super_opts,
        ),
    ]


def _etc_writable(root: Path, layout: dict[str, Any]) -> Path | None:
    """Where activation's own /etc writes land: /etc (classic), the overlay's upper dir (mutable:
    what is written after boot), nowhere (immutable)."""
    if not layout.get("overlayOn"):
        return root / "etc"
    return root / OVERLAY_UPPER.lstrip("/") if layout.get("mutableEtc", True) else None


def _id(text: str) -> int:
    # "+0" is a numeric id; names are resolved on the host, and fixtures only use root's
    return int(text[1:]) if text.startswith("+") else 0


def _alloc(used: set[int], low: int, high: int, up: bool) -> int:
    candidates = range(low, high + 1) if up else range(high, low - 1, -1)
    for candidate in candidates:
        if candidate not in used:
            used.add(candidate)
            return candidate
    raise RuntimeError("out of free UIDs or GIDs")


def setup_users(root: Path, spec: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """update-users-groups.pl on a fresh host: allocation, files and the /var/lib/nixos maps;
    userborn or systemd-sysusers (same allocation here) writing where their modules say."""
    layout = spec.get("layout") or {}
    users = sorted(spec["users"], key=lambda u: u["name"])
    groups = sorted(spec["groups"], key=lambda g: g["name"])
    gids_used = {g["gid"] for g in groups if g["gid"] is not None}
    uids_used = {u["uid"] for u in users if u["uid"] is not None}
    gid_of: dict[str, int] = {}
    group_lines: list[tuple[int, str]] = []
    for g in groups:
        gid = g["gid"] if g["gid"] is not None else _alloc(gids_used, 400, 999, up=False)
        members = set(g["members"]) | {u["name"] for u in users if g["name"] in u["extraGroups"]}
        gid_of[g["name"]] = gid
        group_lines.append((gid, f"{g['name']}:x:{gid}:{','.join(sorted(members))}\n"))
    ids: dict[str, tuple[int, int]] = {}
    passwd: list[tuple[int, str]] = []
    shadow: list[tuple[int, str]] = []
    for u in users:
        group = u["group"]
        gid = int(group) if group.isdigit() else gid_of.get(group, 65534)
        uid = u["uid"]
        if uid is None:
            system = u["isSystemUser"]
            uid = _alloc(uids_used, 400 if system else 1000, 999 if system else 29999, up=not system)
        ids[u["name"]] = (uid, gid)
        passwd.append((uid, f"{u['name']}:x:{uid}:{gid}:{u['description']}:{u['home']}:{u['shell']}\n"))
        # never a real hash: "!" (locked) or the declaration's placeholder
        hashed = u.get("hashedPassword") or u.get("initialHashedPassword") or "!"
        shadow.append((uid, f"{u['name']}:{hashed}:1::::::\n"))
        if u["createHome"]:
            home = root / u["home"].lstrip("/")
            home.mkdir(parents=True, exist_ok=True)
            os.chmod(home, int(u["homeMode"], 8))
            _chown(home, uid, gid)
    etc = _account_files(root, layout)
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "group").write_text("".join(line for _, line in sorted(group_lines)))
    (etc / "passwd").write_text("".join(line for _, line in sorted(passwd)))
    (etc / "shadow").write_text("".join(line for _, line in sorted(shadow)))
    os.chmod(etc / "shadow", 0o640)
    _chown(etc / "shadow", 0, gid_of.get("shadow", 0))
    state = root / "var" / "lib" / "nixos"
    state.mkdir(parents=True, exist_ok=True)
    compact = {"separators": (",", ":"), "sort_keys": True}
    if layout.get("userborn"):
        _userborn_state(root, users, groups)
        return ids
    if layout.get("sysusers"):
        _sysusers_state(root, users, groups, ids, gid_of)
        return ids
    (etc / "subuid").write_text("\n")
    (etc / "subgid").write_text("\n")
    (state / "uid-map").write_text(json.dumps({n: ids[n][0] for n in ids}, **compact))  # type: ignore[arg-type]
    (state / "gid-map").write_text(json.dumps(gid_of, **compact))  # type: ignore[arg-type]
    (state / "declarative-users").write_text(" ".join(sorted(ids)))
    (state / "declarative-groups").write_text(" ".join(sorted(gid_of)))
    (state / "auto-subuid-map").write_text("{}\n")
    return ids


def _account_files(root: Path, layout: dict[str, Any]) -> Path:
    """The directory passwd, group and shadow are written to (userborn.nix, sysusers.nix)."""
    immutable = layout.get("overlayOn") and not layout.get("mutableEtc", True)
    if layout.get("userborn"):
        location = str(layout.get("passwordFilesLocation") or "/etc")
        if location != "/etc":
            return root / location.lstrip("/")
    elif layout.get("sysusers") and immutable:
        return root / "var" / "lib" / "nixos" / "etc"
    return _etc_writable(root, layout) or root / "etc"


def _userborn_state(root: Path, users: list[dict[str, Any]], groups: list[dict[str, Any]]) -> None:
    """/var/lib/userborn/previous-userborn.json: the config userborn last applied (the module's
    `userbornConfig`: users with name, uid, group, description, home, shell, isNormal; groups with
    name, gid, members)."""
    state = root / "var" / "lib" / "userborn"
    state.mkdir(parents=True, exist_ok=True)
    config = {
        "groups": [{"name": g["name"], "gid": g["gid"], "members": g["members"]} for g in groups],
        "users": [
            {
                "name": u["name"],
                "uid": u["uid"],
                "group": u["group"],
                "description": u["description"],
                "home": u["home"],
                "shell": u["shell"],
                "isNormal": u["isNormalUser"],
            }
            for u in users
        ],
    }
    (state / "previous-userborn.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _sysusers_state(
    root: Path,
    users: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    ids: dict[str, tuple[int, int]],
    gid_of: dict[str, int],
) -> None:
    """sysusers.nix's tmpfiles: /var/lib/nixos/uid/<user> and gid/<group> marker files, owned by
    the id systemd-sysusers allocated, for accounts declared without one."""
    for sub, entries, key in (("uid", users, "uid"), ("gid", groups, "gid")):
        directory = root / "var" / "lib" / "nixos" / sub
        directory.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            if entry[key] is not None or (sub == "uid" and entry.get("isNormalUser")):
                continue
            marker = directory / entry["name"]
            marker.touch()
            number = ids[entry["name"]][0] if sub == "uid" else gid_of[entry["name"]]
            _chown(marker, number if sub == "uid" else 0, number if sub == "gid" else 0)


def setup_generation(root: Path, toplevel: str, booted: str | None = None, profile: Sequence[str] = ()) -> None:
    """The system profile (system-N-link) and the /run/{current,booted}-system links."""
    profiles = root / "nix" / "var" / "nix" / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    generations = list(profile) or [toplevel]
    for n, path in enumerate(generations, start=1):
        symlink(root, f"/nix/var/nix/profiles/system-{n}-link", path)
    symlink(root, "/nix/var/nix/profiles/system", f"system-{generations.index(toplevel) + 1}-link")
    symlink(root, "/run/current-system", toplevel)
    symlink(root, "/run/booted-system", booted or toplevel)


# ---- mounts ----
PSEUDO = (
    ("/proc", "proc", "proc", "rw,nosuid,nodev,noexec,relatime", "rw"),
    ("/sys", "sysfs", "sysfs", "rw,nosuid,nodev,noexec,relatime", "rw"),
    ("/dev", "devtmpfs", "devtmpfs", "rw,nosuid", "rw,size=401236k,nr_inodes=1001562,mode=755"),
    ("/dev/pts", "devpts", "devpts", "rw,nosuid,noexec,relatime", "rw,gid=3,mode=620,ptmxmode=666"),
    ("/dev/shm", "tmpfs", "tmpfs", "rw,nosuid,nodev", "rw"),
    ("/run", "tmpfs", "tmpfs", "rw,nosuid,nodev", "rw,size=2006180k,mode=755"),
    ("/run/wrappers", "tmpfs", "tmpfs", "rw,nodev,relatime", "rw,mode=755"),
    ("/run/keys", "ramfs", "ramfs", "rw,nosuid,nodev,relatime", "rw,mode=750"),
    ("/sys/fs/cgroup", "cgroup2", "cgroup2", "rw,nosuid,nodev,noexec,relatime", "rw,nsdelegate,memory_recursiveprot"),
    ("/sys/kernel/security", "securityfs", "securityfs", "rw,nosuid,nodev,noexec,relatime", "rw"),
    ("/sys/fs/pstore", "pstore", "pstore", "rw,nosuid,nodev,noexec,relatime", "rw"),
    ("/sys/fs/bpf", "bpf", "bpf", "rw,nosuid,nodev,noexec,relatime", "rw,mode=700"),
    ("/dev/mqueue", "mqueue", "mqueue", "rw,nosuid,nodev,noexec,relatime", "rw"),
    ("/dev/hugepages", "hugetlbfs", "hugetlbfs", "rw,nosuid,nodev,relatime", "rw,pagesize=2M"),
    ("/sys/kernel/debug", "debugfs", "debugfs", "rw,nosuid,nodev,noexec,relatime", "rw"),
    ("/sys/fs/fuse/connections", "fusectl", "fusectl", "rw,nosuid,nodev,noexec,relatime", "rw"),
    ("/sys/kernel/config", "configfs", "configfs", "rw,nosuid,nodev,noexec,relatime", "rw"),
    (
        "/proc/sys/fs/binfmt_misc",
        "systemd-1",
        "autofs",
        "rw,relatime",
        "rw,fd=37,pgrp=1,timeout=0,minproto=5,maxproto=5,direct",
    ),
)
_FLAGS = frozenset({"ro", "rw", "noatime", "relatime", "nosuid", "nodev", "noexec", "sync", "nodiratime"})
_FS_SUPER = {"vfat": "codepage=437,iocharset=iso8859-1,shortname=mixed,errors=remount-ro"}


class Devices:
    """Block devices: /dev/disk/by-label links to /dev/vdaN as udev makes them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.parts: dict[str, str] = {}

    def resolve(self, device: str | None) -> str:
        if not device:
            return "none"
        for kind in ("by-label", "by-uuid", "by-partlabel"):
            prefix = f"/dev/disk/{kind}/"
            if device.startswith(prefix):
                if device not in self.parts:
                    self.parts[device] = f"vda{len(self.parts) + 1}"
                    symlink(self.root, device, f"../../{self.parts[device]}")
                return f"/dev/{self.parts[device]}"
        return device

    @staticmethod
    def number(device: str, fallback: int) -> str:
        if device.startswith("/dev/vda") and device[8:].isdigit():
            return f"253:{device[8:]}"
        if device.startswith("/dev/vd") and len(device) == 8:
            return f"253:{16 * (ord(device[7]) - ord('a'))}"
        return f"0:{fallback}"


def mount_entry(mount_id: int, parent: int, point: str, device: str, fs_type: str, options: Sequence[str]) -> Mount:
    flags = [o for o in options if o in _FLAGS]
    fs_opts = [o for o in options if o not in _FLAGS and o != "defaults" and not o.startswith(("x-", "nofail"))]
    mount_opts = ["ro" if "ro" in flags else "rw", *[f for f in flags if f not in ("ro", "rw")]]
    if not {"noatime", "relatime"} & set(mount_opts):
        mount_opts.append("relatime")
    super_opts = ",".join(["rw", *fs_opts, *([_FS_SUPER[fs_type]] if fs_type in _FS_SUPER else [])])
    source = device if fs_type not in ("tmpfs", "ramfs") else fs_type
    dev = Devices.number(device, 40 + mount_id)
    return Mount(
        mount_id, parent, dev, "/", point, ",".join(mount_opts), f"shared:{mount_id}", fs_type, source, super_opts
    )


def setup_mounts(root: Path, spec: dict[str, Any], first_uid: int | None) -> tuple[list[Mount], list[str]]:
    devices = Devices(root)
    by_point = {fs["mountPoint"]: fs for fs in spec["fileSystems"]}
    rootfs = by_point["/"]
    root_dev = devices.resolve(rootfs["device"])
    mounts = [mount_entry(22, 1, "/", root_dev, rootfs["fsType"], rootfs["options"])]
    ids = {"/": 22}
    for point, source, fs_type, opts, super_opts in PSEUDO:
        parent = ids.get(os.path.dirname(point), 22)
        ids[point] = len(mounts) + 22
        dev = f"0:{ids[point] - 2}"
        mounts.append(
            Mount(ids[point], parent, dev, "/", point, opts, f"shared:{ids[point]}", fs_type, source, super_opts)
        )
    # boot.readOnlyNixStore: /nix/store bind-mounted read-only onto itself
    store = Mount(
        len(mounts) + 22,
        22,
        mounts[0].dev,
        "/nix/store",
        "/nix/store",
        "ro,nosuid,nodev,relatime",
        "shared:1",
        rootfs["fsType"],
        root_dev,
        "rw",
    )
    mounts.append(store)
    for point in sorted(p for p in by_point if p != "/"):
        fs = by_point[point]
        under = max((m for m in mounts if point.startswith(m.point.rstrip("/") + "/")), key=lambda m: len(m.point))
        mounts.append(
            mount_entry(
                len(mounts) + 22, under.mount_id, point, devices.resolve(fs["device"]), fs["fsType"], fs["options"]
            )
        )
        (root / point.lstrip("/")).mkdir(parents=True, exist_ok=True)
    if first_uid is not None:  # a logged-in user's runtime directory
        run_id = next(m.mount_id for m in mounts if m.point == "/run")
        mounts.append(
            Mount(
                len(mounts) + 22,
                run_id,
                f"0:{len(mounts) + 40}",
                "/",
                f"/run/user/{first_uid}",
                "rw,nosuid,nodev,relatime",
                f"shared:{len(mounts) + 22}",
                "tmpfs",
                "tmpfs",
                f"rw,size=401232k,nr_inodes=100308,mode=700,uid={first_uid},gid=100",
            )
        )
    swaps = [devices.resolve(s["device"]) for s in spec["swapDevices"] if s.get("device")]
    return mounts, swaps


# ---- units ----
def initial_units(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    units: dict[str, dict[str, Any]] = {}
    for name in spec["upstreamUnits"]:
        units[name] = captured.unit_record(name, "active", "active", "static")
    for u in spec["units"]:
        name = u["unit"]
        if not u["enable"]:
            units[name] = captured.unit_record(name, "inactive", "dead", "masked", load="masked")
            continue
        wanted = bool(u["wantedBy"]) or name == "nix-daemon.service"  # socket-activated at boot
        kind = name.rsplit(".", 1)[-1]
        sub = {"socket": "listening", "timer": "waiting"}.get(kind, "running")
        if name in ("firewall.service", "nftables.service"):
            sub = "exited"  # oneshot, RemainAfterExit
        state = "enabled" if u["wantedBy"] else "linked"
        units[name] = captured.unit_record(name, *(("active", sub) if wanted else ("inactive", "dead")), state)
    return units


UPDATED = (
    "# This file was created by systemd-update-done. Its only \n"
    "# purpose is to hold a timestamp of the time this directory\n"
    "# was updated. See man:systemd-update-done.service(8).\n"
    "TIMESTAMP_NSEC=1735732800000000000\n"
)


def machine_id(name: str) -> str:
    return hashlib.sha256(f"nixdrift-fixture:{name}".encode()).hexdigest()[:32]


def resolv_conf(nameservers: Sequence[str]) -> str:
    # resolvconf as NixOS configures it; without declared servers DHCP supplies one
    servers = list(nameservers) or ["10.0.2.3"]
    return "# Generated by resolvconf\n" + "".join(f"nameserver {s}\n" for s in servers) + "options edns0\n"


def activate(root: Path, toplevel: str, spec: dict[str, Any], listeners: Sequence[Listener]) -> LiveState:
    root.mkdir(parents=True, exist_ok=True)
    for d in ("root", "tmp", "var/empty", "home", "run/systemd/system", "run/systemd/transient"):
        (root / d).mkdir(parents=True, exist_ok=True)
    setup_generation(root, toplevel)
    layout = spec.get("layout") or {}
    static = os.readlink(Path(toplevel) / "etc")
    if layout.get("overlayOn"):
        setup_etc_metadata(root, static)
        build_metadata_image(root)
        if layout.get("etcMetadataImage"):  # initrd-find-etc: the links to this generation's layers
            symlink(root, "/etc-metadata-image", str(layout["etcMetadataImage"]))
        symlink(root, "/etc-basedir", static)
    else:
        setup_etc(root, static)
    ids = setup_users(root, spec)
    etc = _etc_writable(root, layout)
    if etc is not None:  # an immutable /etc: systemd bind-mounts /run/machine-id over the placeholder
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "machine-id").write_text(machine_id(spec["hostName"]) + "\n")
        (etc / "resolv.conf").write_text(resolv_conf(spec["nameservers"]))
        (etc / "mtab").symlink_to("../proc/self/mounts")
        (etc / ".updated").write_text(UPDATED)
    normal = sorted(ids[u["name"]][0] for u in spec["users"] if u["isNormalUser"])
    mounts, swaps = setup_mounts(root, spec, normal[0] if normal else None)
    if layout.get("overlayOn"):
        mutable = bool(layout.get("mutableEtc", True))
        mounts.extend(overlay_mounts(mutable, max(m.mount_id for m in mounts) + 1))
    state = LiveState(
        host=spec["hostName"],
        units=initial_units(spec),
        listeners=[
            {
                "proto": li.proto,
                "address": li.address,
                "port": li.port,
                "pid": 700 + i,
                "process": li.process,
                "unit": li.unit,
            }
            for i, li in enumerate(listeners)
        ],
        firewall=Firewall(spec=spec["firewall"], nftables=bool(spec["nftables"])),
        mounts=mounts,
        swaps=swaps,
        hostname=spec["hostName"],
    )
    captured.write(root, state)
    return state
