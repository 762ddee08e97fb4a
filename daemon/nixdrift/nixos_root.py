"""Is the root a NixOS system at all? Comparing a Debian machine with a flake gives a thousand
findings that advise deleting its /etc, so the scanning commands refuse such a root unless asked.

Any one marker is enough, so that every layout a real NixOS host can have counts:
- `/run/current-system`: a booted NixOS system (also with the `system.etc.overlay` /etc, which has
  no `/etc/static`); a link loop there is still a marker: the generation category says it is bad;
- `/etc/static`: the classic /etc of setup-etc.pl, also on a mounted disk (where /run is empty);
- `/etc/NIXOS`: created by NixOS activation;
- `/nix/var/nix/profiles/system`: the system profile, also on a mounted disk;
- `/etc/os-release` with `ID=nixos`.
"""

from __future__ import annotations

import os
import stat

from nixdrift.errors import NixdriftError
from nixdrift.rootfs import Root

MARKERS = ("/run/current-system", "/etc/static", "/etc/NIXOS", "/nix/var/nix/profiles/system")
OS_RELEASE = "/etc/os-release"
_OS_RELEASE_MAX = 64 * 1024


def os_release_id(root: Root) -> str | None:
    """The ID= of the root's os-release (a regular file, read with a bound), None when unreadable."""
    try:
        path = root.open_path(OS_RELEASE)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, _OS_RELEASE_MAX)
    except OSError:
        return None
    finally:
        os.close(fd)
    for line in data.decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ID":
            return value.strip().strip("\"'")
    return None


def markers(root: Root) -> tuple[str, ...]:
    """The NixOS markers present below the root."""
    found = tuple(m for m in MARKERS if os.path.lexists(root.path(m)))
    if os_release_id(root) == "nixos":
        found += (f"{OS_RELEASE} ID=nixos",)
    return found


def is_nixos(root: Root) -> bool:
    return bool(markers(root))


def not_nixos_message(root: Root) -> str:
    where = "this machine" if root.is_live else str(root.prefix)
    return (
        f"{where} is not a NixOS system (none of {', '.join(MARKERS)} exists and {OS_RELEASE} does not say "
        "ID=nixos); pass --not-nixos-ok to compare it with the flake anyway"
    )


def require_nixos(root: Root, *, allowed: bool = False) -> None:
    """Raise the one-line error unless the root is NixOS or the user passed --not-nixos-ok."""
    if not allowed and not is_nixos(root):
        raise NixdriftError(not_nixos_message(root))
