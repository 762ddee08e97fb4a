"""A built fixture host and the drift an operator plants on it, one imperative act per method."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nixdrift.declared.nix import NIX
from nixdrift.demo import captured
from nixdrift.demo.activate import OVERLAY_METADATA, metadata_image, overlay_options, setup_generation
from nixdrift.demo.captured import LiveState, Mount
from nixdrift.demo.hostbuilder import BUILD_USERS, NIX_OPTIONS, build_package, build_toplevel, git
from nixdrift.errors import NixdriftError
from nixdrift.process import run

if TYPE_CHECKING:
    from nixdrift.demo.hostbuilder import HostTree


@dataclass(slots=True)
class BuiltHost:
    tree: HostTree
    toplevel: str
    spec: dict[str, Any]
    state: LiveState
    hand_rules: list[tuple[str, int]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.tree.name

    @property
    def root(self) -> Path:
        return self.tree.root

    @property
    def flake(self) -> Path:
        return self.tree.flake

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def _save(self) -> None:
        captured.write(self.root, self.state)
        self._write_hand_rules()

    # ---- layout ----
    @property
    def layout(self) -> dict[str, Any]:
        return dict(self.spec.get("layout") or {})

    @property
    def overlay(self) -> bool:
        return bool(self.layout.get("overlayOn"))

    @property
    def overlay_mutable(self) -> bool:
        return bool(self.layout.get("mutableEtc", True))

    @contextlib.contextmanager
    def mounted_etc(self) -> Iterator[Path]:
        """Mount ROOT/etc as the real overlayfs system.etc.overlay makes (lower: the metadata layer,
        upper: ROOT/.rw-etc/upper when mutable; read-only otherwise), in this process's own mount
        namespace (made private first, so the machine's mounts never change). Root only."""
        if not self.overlay:
            yield self.path("/etc")
            return
        private_mount_namespace()
        etc = self.path("/etc")
        lower = self.path(OVERLAY_METADATA)
        image = metadata_image(self.root)
        erofs = image.exists() and _try_run(["mount", "-t", "erofs", "-o", "loop,ro", str(image), str(lower)])
        options = overlay_options(self.root, self.overlay_mutable)
        try:
            run(["mount", "-t", "overlay", "overlay", "-o", options, str(etc)], timeout=30)
            try:
                yield etc
            finally:
                run(["umount", "-R", str(etc)], timeout=30)  # with whatever was mounted over its files
        finally:
            if erofs:
                run(["umount", str(lower)], timeout=30)  # the loop device goes with it (autoclear)

    def _resolved(self, host_path: str) -> Path:
        """A host path below the root, its absolute links (/etc/passwd -> /var/lib/nixos/passwd on a
        userborn host) followed below the root too: never into this machine's own files."""
        where = self.path(host_path)
        for _ in range(40):
            if not where.is_symlink():
                return where
            target = os.readlink(where)
            where = self.path(target) if target.startswith("/") else where.parent / target
        raise OSError(f"too many links at {host_path}")

    # ---- packages ----
    def nix_env_install(self, user: str, package: str, version: str | None = None) -> str:
        """`nix-env -i` into the user's profile: a real store path, profile and manifest.nix."""
        store_path = build_package(package, version)
        profile = self.path(f"/nix/var/nix/profiles/per-user/{user}/profile")
        profile.parent.mkdir(parents=True, exist_ok=True)
        run(["nix-env", *NIX_OPTIONS[:3], *BUILD_USERS, "-p", str(profile), "-i", store_path], timeout=300)
        home = "/root" if user == "root" else f"/home/{user}"
        self._link(f"{home}/.nix-profile", f"/nix/var/nix/profiles/per-user/{user}/profile")
        return store_path

    def nix_profile_install(self, user: str, package: str, version: str | None = None) -> str:
        """`nix profile install`: a profile generation with manifest.json (written by nix itself)."""
        store_path = build_package(package, version)
        home = "/root" if user == "root" else f"/home/{user}"
        profile = self.path(f"{home}/.local/state/nix/profiles/profile")
        profile.parent.mkdir(parents=True, exist_ok=True)
        run(
            [*NIX, "profile", "install", *NIX_OPTIONS[:3], *BUILD_USERS, "--profile", str(profile), store_path],
            timeout=300,
        )
        return store_path

    def _link(self, host_path: str, target: str) -> None:
        where = self.path(host_path)
        where.parent.mkdir(parents=True, exist_ok=True)
        if where.is_symlink() or where.exists():
            where.unlink()
        where.symlink_to(target)

    # ---- /etc ----
    def edit_etc(self, target: str, text: str) -> None:
        """Edit a managed file as `sed -i` would: a managed symlink becomes a plain file."""
        where = self.path(f"/etc/{target}")
        mode = where.lstat().st_mode & 0o7777 if not where.is_symlink() else 0o644
        if where.is_symlink():
            where.unlink()
        where.write_text(text)
        os.chmod(where, mode)

    def add_etc_file(self, target: str, text: str, mode: int = 0o644) -> None:
        where = self.path(f"/etc/{target}")
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text(text)
        os.chmod(where, mode)

    def remove_etc(self, target: str) -> None:
        self.path(f"/etc/{target}").unlink()

    def chmod_etc(self, target: str, mode: int) -> None:
        os.chmod(self.path(f"/etc/{target}"), mode)

    # ---- users and groups ----
    def add_group_member(self, group: str, user: str) -> None:
        """`usermod -aG GROUP USER`."""
        path = self._resolved("/etc/group")
        lines = path.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            fields = line.rstrip("\n").split(":")
            if fields[0] == group:
                members = [m for m in fields[3].split(",") if m] + [user]
                lines[i] = ":".join([*fields[:3], ",".join(members)]) + "\n"
        path.write_text("".join(lines))

    def add_user(self, name: str, uid: int | None = None, groups: tuple[str, ...] = ()) -> int:
        """`useradd -m NAME` with NixOS's /etc/default/useradd (group users, shell bash)."""
        passwd = self._resolved("/etc/passwd")
        used = {int(line.split(":")[2]) for line in passwd.read_text().splitlines() if line.count(":") >= 6}
        uid = uid if uid is not None else next(n for n in range(1000, 30000) if n not in used)
        with passwd.open("a") as handle:
            handle.write(f"{name}:x:{uid}:100::/home/{name}:/run/current-system/sw/bin/bash\n")
        with self._resolved("/etc/shadow").open("a") as handle:
            handle.write(f"{name}:!:20089:0:99999:7:::\n")
        self.path(f"/home/{name}").mkdir(parents=True, exist_ok=True)
        for group in groups:
            self.add_group_member(group, name)
        return uid

    def add_group(self, name: str, gid: int) -> None:
        with self._resolved("/etc/group").open("a") as handle:
            handle.write(f"{name}:x:{gid}:\n")

    # ---- services ----
    def _unit_file(self, unit: str) -> str:
        if self.path(f"/etc/static/systemd/system/{unit}").exists():
            return f"/etc/systemd/system/{unit}"
        runtime = f"/run/systemd/system/{unit}"
        self.path(runtime).write_text(f"[Unit]\nDescription={unit}\n\n[Service]\nExecStart=/bin/sh -c 'sleep inf'\n")
        return runtime

    def enable_unit_runtime(self, unit: str, target: str = "multi-user.target") -> None:
        """`systemctl enable --runtime --now UNIT`."""
        fragment = self._unit_file(unit)
        self._link(f"/run/systemd/system/{target}.wants/{unit}", fragment)
        self.state.units[unit] = captured.unit_record(unit, "active", "running", "enabled-runtime", fragment=fragment)
        self._save()

    def mask_unit_runtime(self, unit: str) -> None:
        """`systemctl mask --runtime --now UNIT`."""
        self._link(f"/run/systemd/system/{unit}", "/dev/null")
        self.state.units[unit] = captured.unit_record(
            unit, "inactive", "dead", "masked-runtime", load="masked", fragment=f"/run/systemd/system/{unit}"
        )
        self._save()

    def start_unit(self, unit: str) -> None:
        """`systemctl start UNIT` of a unit nothing wants (or a runtime unit file)."""
        fragment = self._unit_file(unit)
        old = self.state.units.get(unit, {})
        self.state.units[unit] = captured.unit_record(
            unit, "active", "running", old.get("unit_file_state", "linked"), fragment=fragment
        )
        self._save()

    def stop_unit(self, unit: str) -> None:
        record = dict(self.state.units[unit])
        record.update(active_state="inactive", sub_state="dead")
        self.state.units[unit] = record
        self._save()

    def add_dropin(self, unit: str, text: str = "[Service]\nEnvironment=DEBUG=1\n") -> str:
        """`systemctl edit --runtime UNIT`: a drop-in outside the closure."""
        path = f"/run/systemd/system/{unit}.d/override.conf"
        self.path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path(path).write_text(text)
        record = dict(self.state.units[unit])
        record["drop_in_paths"] = sorted({*record["drop_in_paths"], path})
        self.state.units[unit] = record
        self._save()
        return path

    def run_transient(self, unit: str = "run-u42.service") -> None:
        """`systemd-run CMD`: a transient unit."""
        path = f"/run/systemd/transient/{unit}"
        self.path(path).write_text("[Unit]\nDescription=/bin/sleep inf\n\n[Service]\nExecStart=/bin/sleep inf\n")
        self.state.units[unit] = captured.unit_record(unit, "active", "running", "transient", fragment=path)
        self._save()

    # ---- network, firewall, exposure ----
    def open_port(self, port: int, proto: str = "tcp") -> None:
        """`nixos-firewall-tool open PROTO PORT` (a rule in nixos-fw or an element of temp-ports)."""
        self.state.firewall.opened.append((proto, port))
        self._save()

    def add_fw_rule(self, port: int, proto: str = "tcp") -> None:
        """`nft add rule inet nixos-fw input-allow tcp dport PORT accept`: a port opened by hand in
        nixos-fw (not an element of temp-ports, which is what nixos-firewall-tool adds)."""
        self.hand_rules.append((proto, port))
        self._save()

    def _write_hand_rules(self) -> None:
        if not self.hand_rules or not self.state.firewall.nftables:
            return
        path = self.root / ".nixdrift" / "nft.json"
        doc = json.loads(path.read_text())
        for n, (proto, port) in enumerate(self.hand_rules):
            match = {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": port}}
            rule = {"family": "inet", "table": "nixos-fw", "chain": "input-allow", "handle": 900 + n}
            doc["nftables"].append({"rule": {**rule, "expr": [match, {"accept": None}]}})
        path.write_text(json.dumps(doc, indent=2) + "\n")

    def stop_firewall(self) -> None:
        """`systemctl stop firewall`: the INPUT jump (or the nixos-fw table) is gone."""
        self.state.firewall.running = False
        unit = "nftables.service" if self.state.firewall.nftables else "firewall.service"
        if unit in self.state.units:
            self.stop_unit(unit)
        self._save()

    def listen(self, address: str, port: int, unit: str | None = None, process: str = "nc", proto: str = "tcp") -> None:
        pid = 4000 + len(self.state.listeners)
        record = {"proto": proto, "address": address, "port": port, "pid": pid, "process": process, "unit": unit}
        self.state.listeners.append(record)
        self._save()

    def set_nameserver(self, *servers: str) -> None:
        """A hand edit of /etc/resolv.conf."""
        self.path("/etc/resolv.conf").write_text("".join(f"nameserver {s}\n" for s in servers))

    def set_hostname(self, name: str, *, etc: bool = False) -> None:
        """`hostname NAME` (the kernel's name); with etc=True /etc/hostname is replaced too."""
        self.state.hostname = name
        if etc:
            self.edit_etc("hostname", name + "\n")
        self._save()

    # ---- mounts ----
    def mount(
        self, point: str, device: str, fs_type: str, options: str = "rw,relatime", super_options: str = "rw"
    ) -> None:
        mount_id = self.state.next_mount_id()
        parent = max(
            (m for m in self.state.mounts if point.startswith(m.point.rstrip("/") + "/")), key=lambda m: len(m.point)
        )
        source = fs_type if fs_type in ("tmpfs", "ramfs") else device
        entry = Mount(
            mount_id,
            parent.mount_id,
            f"0:{mount_id + 40}",
            "/",
            point,
            options,
            f"shared:{mount_id}",
            fs_type,
            source,
            super_options,
        )
        self.state.mounts.append(entry)
        self.path(point).mkdir(parents=True, exist_ok=True)
        self._save()

    def mount_tmpfs(self, point: str) -> None:
        """`mount -t tmpfs tmpfs POINT`."""
        self.mount(point, "tmpfs", "tmpfs", "rw,relatime", "rw,inode64")

    def bind_over_etc(self, target: str, text: str) -> None:
        """`mount --bind FILE /etc/TARGET`: a file of /etc hidden by another one (the way round a
        read-only /etc), really bind-mounted in this process's namespace and in the mountinfo."""
        source = self.path(f"/var/tmp/{target.replace('/', '_')}")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(text)
        run(["mount", "--bind", str(source), str(self.path(f"/etc/{target}"))], timeout=30)
        root_mount = next(m for m in self.state.mounts if m.point == "/")
        mount_id = self.state.next_mount_id()
        bound = Mount(
            mount_id,
            self.state.mount_id_of("/etc"),
            root_mount.dev,
            f"/var/tmp/{target.replace('/', '_')}",
            f"/etc/{target}",
            "rw,relatime",
            f"shared:{mount_id}",
            root_mount.fs_type,
            root_mount.source,
            root_mount.super_options,
        )
        self.state.mounts.append(bound)
        self._save()

    def mount_over_etc(self, fs_type: str = "overlay", options: str = "rw,relatime", super_options: str = "") -> None:
        """Another filesystem mounted on /etc over the system's (e.g. a writable overlay made by hand
        where the flake declares a read-only one): the last mount on /etc is the one in effect."""
        default = "rw,lowerdir=/run/nixos-etc-metadata,upperdir=/var/tmp/etc-upper,workdir=/var/tmp/etc-work"
        self.mount("/etc", fs_type, fs_type, options, super_options or default)

    def unmount(self, point: str) -> None:
        self.state.mounts = [m for m in self.state.mounts if m.point != point]
        self._save()

    def add_swap(self, device: str) -> None:
        self.state.swaps.append(device)
        self._save()

    # ---- generations ----
    def _variant(self, version: str) -> str:
        """The toplevel of this host with another NixOS version: another generation."""
        directory = self.tree.base / f"variant-{version}"
        saved = self.tree.decl.version
        self.tree.decl.version = version
        try:
            self.tree.write_flake(directory)
        finally:
            self.tree.decl.version = saved
        toplevel, _spec = build_toplevel(f"path:{directory}", self.name)
        return toplevel

    def switch_generation(self, version: str = "24.11.20241201.0000000") -> str:
        """The host runs (and booted) another generation than the flake declares (a rollback)."""
        other = self._variant(version)
        setup_generation(self.root, other, booted=other, profile=(other, self.toplevel))
        return other

    def reboot_pending(self, version: str = "24.11.20241201.0000000") -> str:
        """The host switched to the declared generation but booted an older one."""
        older = self._variant(version)
        setup_generation(self.root, self.toplevel, booted=older, profile=(older, self.toplevel))
        return older

    # ---- the config repository ----
    def commit_dirty_edit(self, text: str = "# tweaked on the host, not committed\n") -> None:
        """An uncommitted change to a tracked file of the flake."""
        with (self.flake / "host.nix").open("a") as handle:
            handle.write(text)

    def add_untracked(self, name: str = "notes.nix", text: str = "{ }\n") -> None:
        (self.flake / name).write_text(text)

    def commit_unpushed(self, message: str = "Local change") -> None:
        with (self.flake / "host.nix").open("a") as handle:
            handle.write(f"# {message}\n")
        git(self.flake, "commit", "-q", "-am", message)


def _try_run(argv: list[str]) -> bool:
    """Run a command that may fail for want of something on this machine (a loop device)."""
    try:
        run(argv, timeout=30)
    except NixdriftError:
        return False
    return True


_CLONE_NEWNS = 0x00020000
_PRIVATE: list[bool] = []


def private_mount_namespace() -> None:
    """Move this process into a mount namespace of its own, once, with every mount private: what
    it mounts then is seen by it and its children only (os.unshare is Python 3.12+)."""
    if _PRIVATE:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed: mounting needs root")
    run(["mount", "--make-rprivate", "/"], timeout=30)
    _PRIVATE.append(True)
