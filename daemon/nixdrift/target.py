"""Which machine a scan read, and whether what it found may be acted on where we run now.

A report's revert commands name the scanned machine's own paths and state (`/etc/motd`, a unit,
a firewall set). They may run only on that machine, and only when the scan read its live root: a
tree read with `--root` (a snapshot, a mounted disk) is another machine's, or an old copy of it.
`refusal()` is the one rule; the remediation script repeats it in bash.
"""

from __future__ import annotations

import os
import re

from nixdrift.models import ScanTarget
from nixdrift.rootfs import Root

_MACHINE_ID = re.compile(r"[0-9a-f]{32}")


def _first_line(root: Root, path: str) -> str | None:
    try:
        text = root.read_text(path)
    except OSError:
        return None
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else None


def machine_id(root: Root) -> str | None:
    """`/etc/machine-id` below the root when it holds one (32 lowercase hex digits), else None."""
    value = _first_line(root, "/etc/machine-id")
    return value if value is not None and _MACHINE_ID.fullmatch(value) else None


def current_system(root: Root) -> str | None:
    """The store path `/run/current-system` points to below the root, else None."""
    try:
        target = root.resolve("/run/current-system")
    except OSError:  # a symlink loop
        return None
    return target if target.startswith("/nix/store/") else None


def capture(root: Root) -> ScanTarget:
    """What a scan of `root` reads: the live machine's kernel host name, or the root's /etc/hostname."""
    host = os.uname().nodename if root.is_live else (_first_line(root, "/etc/hostname") or "")
    return ScanTarget(
        host=host,
        machine_id=machine_id(root),
        system=current_system(root),
        root=str(root.prefix),
        live=root.is_live,
    )


def here() -> ScanTarget:
    """This machine, as a scan of its live root records it."""
    return capture(Root())


def refusal(recorded: ScanTarget | None, current: ScanTarget) -> str | None:
    """Why a report that scanned `recorded` must not be acted on at `current`, or None when it may.

    It may when the scan read the live root of a machine with the same host name and the same
    machine-id (or, when it recorded no machine-id, the same current system). Anything it cannot
    tell refuses.
    """
    if recorded is None:
        return "the report does not record which machine it scanned (made before nixdrift recorded it)"
    if not recorded.live:
        return (
            f"the report was made from a scan of {recorded.root!r} (--root), not of a running machine: "
            "its commands name that machine's own paths and state, not paths below that directory; "
            "make the report on the host itself"
        )
    if recorded.host != current.host:
        return f"the report was made for host {recorded.host!r}, this is host {current.host!r}"
    if recorded.machine_id is not None:
        if recorded.machine_id != current.machine_id:
            return (
                f"the report was made for machine-id {recorded.machine_id}, "
                f"this machine's is {current.machine_id or 'unknown'}"
            )
        return None
    if recorded.system is not None:
        if recorded.system != current.system:
            return (
                f"the report was made on a machine with no machine-id running {recorded.system}, "
                f"this machine runs {current.system or 'no NixOS system'}"
            )
        return None
    return "the report records neither a machine-id nor a current system: it cannot tell this is the same machine"
