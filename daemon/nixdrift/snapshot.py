"""`nixdrift snapshot`: capture a live host into a directory that `check --root` reads elsewhere.

A snapshot holds what the comparisons need and no secret (the README's "What a snapshot holds"):

- whole files only where a comparison parses the content: the files the collectors list (passwd,
  group, hostname, resolv.conf, mountinfo, the NixOS maps, ...), os-release, /etc/.clean and
  /etc/NIXOS. /etc/shadow keeps each account's password state, never its hash (`redact_shadow_line`);
  URL credentials are stripped from mount sources.
- every other regular file below /etc (a private key, `secret.env`, a nix.conf with
  `access-tokens`, the ssh host keys) is an empty file of the same mode and owner, its digest, size,
  mode and owner recorded in DIR/.nixdrift/digests.json (`capture.digests`), which is all the etc
  comparison reads of it. A file among those that still holds a private key block is held the same
  way wherever it is.
- unit files and drop-ins in the writable unit directories are rewritten as their settings, with
  Environment=, Exec*= and SetCredential*= values replaced by digests (`nixdrift-sha256:...`): the
  service-config comparison compares ExecStart= by digest; the original file's digest is recorded.
- the configuration repository /etc/nixos is not copied (`check --root` evaluates the flake named
  with --flake); only its .git/config, with credentials removed, says where it comes from.
- symlinks stay symlinks (/etc/static and /run/current-system point into the store, which a
  snapshot does not copy); sockets, FIFOs and devices are left out.

What is not a file goes to DIR/.nixdrift/ (see DESIGN.md). Every source that cannot be captured is
named in a warning on stderr.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nixdrift import __version__
from nixdrift.capture import digests, exposure, firewall, services
from nixdrift.capture.digests import DIGESTS_FILE, Held
from nixdrift.capture.etc import MAX_HASH_BYTES
from nixdrift.capture.packages import parse_passwd_homes
from nixdrift.capture.unitfiles import parse_unit_file
from nixdrift.categories import TABLE
from nixdrift.pipeline import now_iso
from nixdrift.redact import strip_userinfo, value_digest
from nixdrift.rootfs import SNAPSHOT_DIR, Root

ALWAYS = ("/etc/hostname", "/etc/os-release", "/run/current-system", "/run/booted-system")
# whole files a comparison reads besides those the collectors list
KEPT = ("/etc/.clean", "/etc/NIXOS")
# host paths copied from another source on a live host (see capture/mounts.py)
SOURCES = {"/proc/self/mountinfo": "/proc/1/mountinfo"}
# path -> index of the hash field, for the files kept whole that hold password hashes
REDACTED = {"/etc/shadow": 1, "/etc/gshadow": 1, "/etc/shadow-": 1, "/etc/gshadow-": 1}
# an immutable /etc links shadow to where userborn and systemd-sysusers keep it (capture/accounts.py)
REDACTED |= {"/var/lib/nixos/shadow": 1, "/var/lib/nixos/etc/shadow": 1, "/var/lib/nixos/etc/gshadow": 1}
# files that are secrets themselves: named in snapshot.json's "withheld" (held by digest like the rest)
WITHHELD = (
    "/etc/ssh/ssh_host_*_key",
    "/etc/NetworkManager/system-connections/*",
    "/etc/wireguard/*",
    "/etc/ipsec.secrets",
    "/etc/ppp/*-secrets",
    "/etc/krb5.keytab",
    "/etc/nixdrift/*kubeconfig*",
)
HELD_BELOW = "/etc"  # regular files here are held by digest unless kept whole
REPO = "/etc/nixos"
REPO_CONFIG = "/etc/nixos/.git/config"
UNIT_DIRS = services.WRITABLE_DIRS
# unit settings whose values may carry secrets (tokens in command lines, passwords in the environment)
REDUCED_KEYS = re.compile(r"Environment|Exec[A-Za-z]+|SetCredential(?:Encrypted)?")
HASH_MARKER = "$nixdrift-redacted$"
PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
# .git/config values that are credentials whatever their form
_GIT_KEY_SECRET = re.compile(r"(?i)^(\s*(?:extraheader|password|token)\s*=\s*).*$")

Extra = Callable[[Path], list[str]]
Warn = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"nixdrift: warning: {message}", file=sys.stderr, flush=True)


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


def reduce_unit_file(text: str) -> str:
    """A unit file or drop-in as its settings, with secret-bearing values as digests.

    Comments go (they may quote what they explain); a file that had any content keeps a comment
    line, so that it is not taken for an empty file (a mask) in the snapshot.
    """
    settings, _problems = parse_unit_file(text)
    lines = ["# reduced by nixdrift snapshot: Environment=, Exec*= and SetCredential*= values are digests"]
    section = None
    for s in settings:
        if s.section != section:
            section = s.section
            lines.append(f"[{section}]")
        value = value_digest(s.value) if s.value and REDUCED_KEYS.fullmatch(s.key) else s.value
        lines.append(f"{s.key}={value}")
    return "\n".join(lines) + "\n" if text.strip() else ""


def strip_git_config(text: str) -> str:
    """A repository's .git/config without credentials: URL userinfo, extraheader (CI tokens),
    password and token values."""
    return "\n".join(_GIT_KEY_SECRET.sub(r"\1<withheld>", strip_userinfo(line)) for line in text.split("\n"))


def _withheld(host_path: str) -> bool:
    return any(fnmatch.fnmatchcase(host_path, pattern) for pattern in WITHHELD)


def _below(host_path: str, top: str) -> bool:
    return host_path == top or host_path.startswith(top.rstrip("/") + "/")


def _digest(src: Path) -> tuple[str | None, int]:
    """sha256 (None beyond the etc collector's hash limit, as it does) and size of a regular file."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{src}: not a regular file")
        if st.st_size > MAX_HASH_BYTES:
            return None, st.st_size
        digest = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
        return digest.hexdigest(), st.st_size


def _read(src: Path) -> bytes:
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


@dataclass
class _Copier:
    """One snapshot's copy of the host's files: what it kept whole, held by digest or reduced."""

    out: Path
    keep: frozenset[str]  # host paths of files kept whole
    previous: dict[str, Held]  # records of a snapshot being copied again (its files are empty)
    warn: Warn
    held: dict[str, Held] = field(default_factory=dict)
    reduced: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)

    def copy(self, src: Path, dst: Path, host_path: str) -> None:
        try:
            self._copy_one(src, dst, host_path)
        except OSError as exc:
            self.warn(f"could not capture {host_path}: {exc.strerror or exc}")

    def _copy_one(self, src: Path, dst: Path, host_path: str) -> None:
        st = os.lstat(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if stat.S_ISLNK(st.st_mode):
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            os.symlink(strip_userinfo(os.readlink(src)), dst)  # a link to postgres://user:password@db
        elif stat.S_ISDIR(st.st_mode):
            if host_path == REPO:
                self._repo(src, dst)
                return
            dst.mkdir(exist_ok=True)
            for entry in sorted(os.scandir(src), key=lambda e: e.name):
                self.copy(Path(entry.path), dst / entry.name, f"{host_path.rstrip('/')}/{entry.name}")
        elif stat.S_ISREG(st.st_mode):
            self._file(src, dst, host_path, st)
        # sockets, fifos and devices are not copied: they hold no state we compare

    def _file(self, src: Path, dst: Path, host_path: str, st: os.stat_result) -> None:
        if any(_below(host_path, d) for d in UNIT_DIRS):
            held = self._hold(src, dst, host_path, st)
            original = _read(src).decode("utf-8", errors="surrogateescape")
            dst.write_bytes(reduce_unit_file(original).encode("utf-8", "surrogateescape"))
            os.chmod(dst, held.mode)
            self.reduced.append(host_path)
            return
        if host_path in self.keep and host_path not in self.previous:
            data = _read(src)
            if not PRIVATE_KEY.search(data):
                self._write_whole(src, dst, host_path, st, data)
                return
        if _below(host_path, HELD_BELOW) or host_path in self.keep or PRIVATE_KEY.search(_read(src)):
            self._hold(src, dst, host_path, st)
            if _withheld(host_path):
                self.withheld.append(host_path)
            return
        self._write_whole(src, dst, host_path, st, _read(src))

    def _write_whole(self, src: Path, dst: Path, host_path: str, st: os.stat_result, data: bytes) -> None:
        if host_path in REDACTED:
            text = data.decode("utf-8", errors="surrogateescape")
            redacted = "".join(redact_shadow_line(line, REDACTED[host_path]) + "\n" for line in text.splitlines())
            data = redacted.encode("utf-8", "surrogateescape")
        elif host_path in SOURCES:  # mount sources: curlftpfs#ftp://user:password@host, sshfs, davfs
            data = strip_userinfo(data.decode("utf-8", errors="surrogateescape")).encode("utf-8", "surrogateescape")
        dst.write_bytes(data)
        self._meta(dst, stat.S_IMODE(st.st_mode) & (0o600 if host_path in REDACTED else 0o7777), st.st_uid, st.st_gid)

    def _hold(self, src: Path, dst: Path, host_path: str, st: os.stat_result) -> Held:
        """An empty file of the same mode and owner in place of `src`, its digest recorded."""
        record = self.previous.get(host_path)
        if record is None:
            sha, size = _digest(src)
            record = Held(sha, size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        dst.write_bytes(b"")
        self._meta(dst, record.mode, record.uid, record.gid)
        self.held[host_path] = record
        return record

    @staticmethod
    def _meta(dst: Path, mode: int, uid: int, gid: int) -> None:
        with contextlib.suppress(OSError):  # not root: the owner is in digests.json for held files
            os.chown(dst, uid, gid, follow_symlinks=False)
        os.chmod(dst, mode)

    def _repo(self, src: Path, dst: Path) -> None:
        """Only the repository's .git/config, without credentials (see the module's docstring)."""
        config = src / ".git" / "config"
        if not config.is_file() or config.is_symlink():
            return
        text = _read(config).decode("utf-8", errors="surrogateescape")
        (dst / ".git").mkdir(parents=True, exist_ok=True)
        (dst / ".git" / "config").write_text(strip_git_config(text), errors="surrogateescape")


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


def copy_paths(
    root: Root,
    out: Path,
    paths: Iterable[str],
    withheld: list[str] | None = None,
    warn: Warn = _stderr,
) -> list[str]:
    """Copy host paths below `out` as the module's docstring says; secret files are held by digest
    (recorded in out/.nixdrift/digests.json) and those matching WITHHELD named in `withheld`."""
    wanted = sorted(set(paths))
    copier = _Copier(out, frozenset((*wanted, *KEPT)), dict(digests.load(root)), warn)
    copied: list[str] = []
    for host_path in wanted:
        src = root.path(host_path)
        if root.is_live and host_path in SOURCES and os.access(SOURCES[host_path], os.R_OK):
            src = Path(SOURCES[host_path])
        if not os.path.lexists(src):
            continue
        copier.copy(src, out / host_path.lstrip("/"), host_path)
        copied.append(host_path)
    (out / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
    sidecar = {path: record.to_json() for path, record in sorted(copier.held.items())}
    (out / SNAPSHOT_DIR / DIGESTS_FILE).write_text(json.dumps(sidecar, indent=1, sort_keys=True) + "\n")
    if withheld is not None:
        withheld.extend(copier.withheld)
    return copied


def take(out: Path, host: str, root: Root | None = None, warn: Warn = _stderr) -> dict[str, object]:
    """Capture the (live) host into `out` and return the snapshot.json record. Every source that
    cannot be captured is passed to `warn` (stderr by default)."""
    root = root or Root()
    out.mkdir(parents=True, exist_ok=True)
    (out / SNAPSHOT_DIR).mkdir(exist_ok=True)
    paths = set(ALWAYS)
    for entry in TABLE.values():
        paths.update(entry.snapshot_paths)
    paths.update(user_profile_paths(root))
    withheld: list[str] = []
    files = copy_paths(root, out, paths, withheld, warn)
    captured: list[str] = []
    if root.is_live:
        for extra in extras():
            try:
                captured.extend(extra(out))
            except Exception as exc:  # noqa: BLE001 - one missing source must not void the snapshot
                warn(f"could not capture {getattr(extra, '__module__', extra)}: {type(exc).__name__}: {exc}")
    held = digests.parse((out / SNAPSHOT_DIR / DIGESTS_FILE).read_text())
    record: dict[str, object] = {
        "host": host,
        "time": now_iso(),
        "nixdrift_version": __version__,
        "files": files,
        "sources": sorted(captured),
        "withheld": sorted(set(withheld)),  # secret files, present in the snapshot only as empty files
        "held_by_digest": len(held),  # files whose content stayed on the host (see digests.json)
    }
    (out / SNAPSHOT_DIR / "snapshot.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
