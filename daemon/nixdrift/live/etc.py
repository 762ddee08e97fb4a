"""Live /etc as records: entries, the closure's reference entries, the overlay's upper directory,
and which paths belong to another category, are allowed or are security-relevant."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nixdrift import layout
from nixdrift.layout import EtcMount

# Owned by another category: neither walked nor compared here.
SKIP: tuple[str, ...] = (
    "resolv.conf",  # network: written by resolvconf or linked to systemd-resolved
    "hostname",  # network: compared with networking.hostName
    "nixos",  # repo: the configuration repository (can be large: never walked)
    "systemd/system",  # services: unit directories, runtime enables and masks
    "systemd/system.control",  # services: `systemctl set-property` drop-ins
)

# Written by NixOS activation or the running system, not by the flake: never imperative drift.
# (Where the closure does ship one of these, it is still compared like any managed entry.)
ALLOW: tuple[str, ...] = (
    "static",  # setup-etc.pl: the link to the system's etc tree
    ".clean",  # setup-etc.pl: the list of managed copies
    "NIXOS",  # setup-etc.pl: the tag file marking a NixOS root
    "passwd",  # update-users-groups.pl (the users category compares them)
    "group",
    "shadow",
    "gshadow",  # shadow-utils (gpasswd) with mutable users
    "subuid",  # update-users-groups.pl (with its own state in /var/lib/nixos/auto-subuid-map)
    "subgid",
    # shadow-utils (useradd, usermod, groupadd, passwd, chpasswd, vipw) and systemd-sysusers keep the
    # previous version of each file they rewrite as `<file>-`; useradd and usermod rewrite subuid and
    # subgid too. While one runs, it holds `<file>.lock` and writes `<file>+` before renaming it (the
    # daemon can see them), and glibc's lckpwdf() leaves .pwd.lock.
    "passwd-",
    "group-",
    "shadow-",
    "gshadow-",
    "subuid-",
    "subgid-",
    "passwd.lock",
    "group.lock",
    "shadow.lock",
    "gshadow.lock",
    "subuid.lock",
    "subgid.lock",
    "passwd+",
    "group+",
    "shadow+",
    "gshadow+",
    "subuid+",
    "subgid+",
    ".pwd.lock",
    "machine-id",  # systemd, first boot
    "adjtime",  # hwclock
    "localtime",  # timedatectl when time.timeZone is null
    "mtab",  # activation links it to /proc/mounts
    "ld.so.cache",  # ldconfig
    ".updated",  # systemd ConditionNeedsUpdate stamp
    "ssh/ssh_host_*",  # sshd generates its host keys on first start (secrets: never opened)
    "NetworkManager/system-connections",  # NetworkManager's own profile store
    "lvm/archive",  # LVM metadata backups
    "lvm/backup",
    "zfs/zpool.cache",  # ZFS pool cache
    "nixdrift",  # this tool's own directory
)

# Security-relevant: drift here uses the etc-sensitive rule.
SENSITIVE: tuple[str, ...] = ("sudoers", "sudoers.d", "ssh", "pam.d", "security", "polkit-1")


def _matcher(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    """One compiled test for "the path is a pattern or below one" (`*` stays within a name): the
    walk asks it for every entry, so it must be one regex, not a loop of fnmatch calls."""
    alternatives = (re.escape(p).replace(r"\*", "[^/]*") for p in patterns)
    return re.compile(f"(?:{'|'.join(alternatives)})(?:/.*)?", re.DOTALL).fullmatch


_SKIPPED = _matcher(SKIP)
_ALLOWED = _matcher(ALLOW)
# The account files' other temporaries, named by a process id: shadow-utils links `<file>.<pid>` to
# take its lock, update-users-groups.pl (File::Slurp, atomic) writes `<file>.<pid>` and renames it.
_ACCOUNT_TEMPORARY = re.compile(r"(?:passwd|group|shadow|gshadow|subuid|subgid)\.[0-9]+").fullmatch
_SENSITIVE = _matcher(SENSITIVE)


def skipped(rel: str) -> bool:
    return _SKIPPED(rel) is not None


def allowed(rel: str) -> bool:
    return _ALLOWED(rel) is not None or _ACCOUNT_TEMPORARY(rel) is not None


def sensitive(rel: str) -> bool:
    return _SENSITIVE(rel) is not None


class EntryType(enum.Enum):
    FILE = "file"
    SYMLINK = "symlink"
    DIR = "directory"
    FIFO = "fifo"
    SOCKET = "socket"
    DEVICE = "device"


@dataclass(frozen=True, slots=True)
class EtcEntry:
    rel: str  # relative to /etc; odd bytes kept as surrogate escapes
    type: EntryType
    mode: int = 0  # permission bits
    uid: int = 0
    gid: int = 0
    target: str | None = None  # a symlink's target
    sha256: str | None = None  # regular files that are compared or reported
    size: int = 0


@dataclass(frozen=True, slots=True)
class ClosureEntry:
    rel: str
    mode: str  # "symlink", "direct-symlink" or an octal mode (a managed copy)
    target: str | None  # the store path the closure's link points to (plain links: read when needed)
    uid: int | None = None  # a copy's owner, resolved from the sidecars
    gid: int | None = None
    owner: str = ""  # the sidecars' text, "user:group"
    sha256: str | None = None  # the source's digest, when a live regular file is compared with it

    @property
    def is_copy(self) -> bool:
        return self.mode not in ("symlink", "direct-symlink")


class UpperKind(enum.Enum):
    """What an entry of the overlay's upper directory means (overlayfs(5))."""

    NEW = "new since boot"  # nothing below it in the lower layers
    COPY_UP = "copy-up of a managed file"  # written, chmod-ed or chown-ed: copied up from the lower layer
    WHITEOUT = "whiteout: deleted since boot"  # a 0/0 character device hides the lower entry
    OPAQUE = "opaque directory: recreated since boot"  # trusted.overlay.opaque=y hides the lower directory


@dataclass(frozen=True, slots=True)
class OverlayLive:
    """/etc on system.etc.overlay: the mount, the upper directory's changes, the image in use."""

    mount: EtcMount | None  # None: /etc is not a mount point
    upper: Mapping[str, UpperKind]  # relative to /etc; empty when immutable
    metadata_image: str | None  # /etc-metadata-image (initrd-find-etc's link), when present
    overmounts: tuple[str, ...] = ()  # mount points below /etc (something mounted over a file in it)


@dataclass(frozen=True, slots=True)
class EtcLive:
    entries: Mapping[str, EtcEntry]
    clean: frozenset[str]  # /etc/.clean: managed copies
    closure: Mapping[str, ClosureEntry] | None  # None: no reference tree here
    reference: str = ""  # host path of the reference etc tree
    unlisted: frozenset[str] = frozenset()  # directories (relative to /etc) that could not be listed
    has_static: bool = True  # /etc/static exists (setup-etc.pl's layout)
    overlay: OverlayLive | None = None  # set when /etc is an overlay or the flake declares one
    mount_known: bool = True  # mountinfo could be read: the /etc mount is known

    @property
    def live_layout(self) -> layout.EtcLayout | None:
        return layout.live_etc(self.overlay.mount if self.overlay else None, self.has_static)

    def unseen(self, rel: str) -> bool:
        """Below a directory that could not be listed: neither present nor absent is known."""
        return any(d == "" or rel == d or rel.startswith(d + "/") for d in self.unlisted)
