"""`nixdrift snapshot`: capture a live host into a directory that `check --root` reads elsewhere.

Files are copied under their own paths (symlinks kept as symlinks, so /etc/static and
/run/current-system still point into the store); what is not a file goes to DIR/.nixdrift/ (see
DESIGN.md). Secrets never leave the host: /etc/shadow, /etc/gshadow and their backups are written with
every password hash replaced by a marker that keeps only its presence, and files that are secrets
themselves (host keys, VPN and Wi-Fi credentials: WITHHELD) are written empty, with their mode.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from nixdrift import __version__
from nixdrift.capture import exposure, firewall, services
from nixdrift.capture.packages import parse_passwd_homes
from nixdrift.categories import TABLE
from nixdrift.pipeline import now_iso
from nixdrift.rootfs import SNAPSHOT_DIR, Root

log = logging.getLogger(__name__)

ALWAYS = ("/etc/hostname", "/etc/os-release", "/run/current-system", "/run/booted-system")
# host paths copied from another source on a live host (see capture/mounts.py)
SOURCES = {"/proc/self/mountinfo": "/proc/1/mountinfo"}
# path -> index of the hash field (the "-" files are the backups shadow tools leave)
REDACTED = {"/etc/shadow": 1, "/etc/gshadow": 1, "/etc/shadow-": 1, "/etc/gshadow-": 1}
# files whose content is a secret: copied as empty files of the same mode, and listed as withheld
WITHHELD = (
    "/etc/ssh/ssh_host_*_key",
    "/etc/NetworkManager/system-connections/*",
    "/etc/wireguard/*",
    "/etc/ipsec.secrets",
    "/etc/ppp/*-secrets",
    "/etc/krb5.keytab",
    "/etc/nixdrift/*kubeconfig*",
)
HASH_MARKER = "$nixdrift-redacted$"

Extra = Callable[[Path], list[str]]


def redact_shadow_line(line: str, field: int = 1) -> str:
    """Keep the account and whether a password is set, locked or empty; drop the hash."""
    parts = line.split(":")
    if len(parts) <= field:
        return line
    value = parts[field]
    locked = value.startswith("!")
    body = value.lstrip("!")
    if body.startswith("$") or (body and body not in ("*", "x")):
        parts[field] = ("!" if locked else "") + HASH_MARKER
    return ":".join(parts)


def _withheld(host_path: str) -> bool:
    return any(fnmatch.fnmatchcase(host_path, pattern) for pattern in WITHHELD)


def _copy_one(src: Path, dst: Path, host_path: str, withheld: list[str]) -> None:
    st = os.lstat(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if stat.S_ISLNK(st.st_mode):
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISDIR(st.st_mode):
        dst.mkdir(exist_ok=True)
        for entry in os.scandir(src):
            _copy_safely(Path(entry.path), dst / entry.name, f"{host_path.rstrip('/')}/{entry.name}", withheld)
    elif stat.S_ISREG(st.st_mode) and host_path in REDACTED:
        lines = src.read_text(errors="surrogateescape").splitlines()
        text = "".join(redact_shadow_line(line, REDACTED[host_path]) + "\n" for line in lines)
        dst.write_text(text, errors="surrogateescape")
        os.chmod(dst, 0o600)
    elif stat.S_ISREG(st.st_mode) and _withheld(host_path):
        dst.write_bytes(b"")
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        withheld.append(host_path)
    elif stat.S_ISREG(st.st_mode):
        shutil.copy2(src, dst, follow_symlinks=False)
    # sockets, fifos and devices are not copied: they hold no state we compare


def _copy_safely(src: Path, dst: Path, host_path: str, withheld: list[str]) -> None:
    try:
        _copy_one(src, dst, host_path, withheld)
    except OSError as exc:
        log.warning("snapshot: cannot copy %s: %s", src, exc)


def copy_paths(root: Root, out: Path, paths: Iterable[str], withheld: list[str] | None = None) -> list[str]:
    """Copy host paths below `out`; secret files are written empty and named in `withheld`."""
    withheld = [] if withheld is None else withheld
    copied: list[str] = []
    for host_path in sorted(set(paths)):
        src = root.path(host_path)
        if root.is_live and host_path in SOURCES and os.access(SOURCES[host_path], os.R_OK):
            src = Path(SOURCES[host_path])
        if not os.path.lexists(src):
            continue
        dst = out / host_path.lstrip("/")
        _copy_safely(src, dst, host_path, withheld)
        copied.append(host_path)
    return copied


def user_profile_paths(root: Root) -> list[str]:
    """Users' own profile links: known only from passwd, so not in any collector's fixed list."""
    try:
        text = root.read_text("/etc/passwd")
    except OSError:
        return []
    paths: list[str] = []
    for _user, home in parse_passwd_homes(text):
        if home not in ("/", "/var/empty", "/nonexistent"):
            paths += [f"{home}/.nix-profile", f"{home}/.local/state/nix/profiles"]
    return paths


def extras() -> list[Extra]:
    found: list[Extra] = []
    for module in (services, firewall, exposure):
        fn = getattr(module, "snapshot_extra", None)
        if callable(fn):
            found.append(fn)
    return found


def take(out: Path, host: str, root: Root | None = None) -> dict[str, object]:
    """Capture the (live) host into `out` and return the snapshot.json record."""
    root = root or Root()
    out.mkdir(parents=True, exist_ok=True)
    (out / SNAPSHOT_DIR).mkdir(exist_ok=True)
    paths = set(ALWAYS)
    for entry in TABLE.values():
        paths.update(entry.snapshot_paths)
    paths.update(user_profile_paths(root))
    withheld: list[str] = []
    files = copy_paths(root, out, paths, withheld)
    captured: list[str] = []
    if root.is_live:
        for extra in extras():
            try:
                captured.extend(extra(out))
            except Exception as exc:  # noqa: BLE001 - one missing source must not void the snapshot
                log.warning("snapshot: %s failed: %s", getattr(extra, "__module__", extra), exc)
    record: dict[str, object] = {
        "host": host,
        "time": now_iso(),
        "nixdrift_version": __version__,
        "files": files,
        "sources": sorted(captured),
        "withheld": sorted(set(withheld)),  # secret files, present in the snapshot only as empty files
    }
    (out / SNAPSHOT_DIR / "snapshot.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
