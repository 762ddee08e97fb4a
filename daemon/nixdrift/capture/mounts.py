"""Mounted filesystems and active swap: /proc/self/mountinfo and /proc/swaps below the root.

A snapshot holds them as copied files (DIR/proc/self/mountinfo, DIR/proc/swaps). Device links
(/dev/disk/by-label/X, by-uuid) are resolved here, below the root, because the comparator may not
read the disk; a link that cannot be resolved (a snapshot has no /dev) is simply left out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from nixdrift.capture.needs import MountNeeds
from nixdrift.capture.parsed import reason
from nixdrift.live.mounts import Mount, MountsLive, Swap, declared_device
from nixdrift.models import Category, Section
from nixdrift.rootfs import Root

MOUNTINFO = "/proc/self/mountinfo"
# On a live host the mounts of init's namespace are the host's: a hardened service (PrivateTmp,
# ProtectSystem) sees extra mounts of its own in /proc/self. Needs CAP_SYS_PTRACE, else self.
HOST_MOUNTINFO = "/proc/1/mountinfo"
SWAPS = "/proc/swaps"
SNAPSHOT_PATHS: tuple[str, ...] = (MOUNTINFO, SWAPS)
_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(text: str) -> str:
    """Undo the kernel's octal escapes (\\040 space, \\011 tab, \\012 newline, \\134 backslash)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def _mount(line: str) -> Mount:
    fields = line.split(" ")
    try:
        dash = fields.index("-", 6)
    except ValueError:
        raise ValueError("no '-' separator after the optional fields") from None
    if len(fields) < dash + 3:
        raise ValueError("fewer than three fields after '-'")
    mount_id, parent_id, _devno, root, mount_point, options = fields[:6]
    fs_type, source = fields[dash + 1], fields[dash + 2]
    super_options = fields[dash + 3] if len(fields) > dash + 3 else ""
    if not mount_point.startswith("/"):
        raise ValueError(f"mount point {mount_point[:60]!r} is not absolute")
    return Mount(
        mount_id=int(mount_id),
        parent_id=int(parent_id),
        root=unescape(root),
        mount_point=unescape(mount_point),
        options=tuple(options.split(",")),
        fs_type=unescape(fs_type),
        source=unescape(source),
        super_options=tuple(super_options.split(",")) if super_options else (),
    )


def parse_mountinfo(text: str) -> tuple[tuple[Mount, ...], tuple[str, ...]]:
    mounts: list[Mount] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            mounts.append(_mount(line))
        except ValueError as exc:
            problems.append(f"{MOUNTINFO}:{lineno}: {exc}")
    return tuple(mounts), tuple(problems)


def parse_swaps(text: str) -> tuple[tuple[Swap, ...], tuple[str, ...]]:
    swaps: list[Swap] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        words = line.split()
        if not words or (lineno == 1 and words[0] == "Filename"):
            continue
        if len(words) < 2 or not words[0].startswith("/"):
            problems.append(f"{SWAPS}:{lineno}: not a swap line")
            continue
        swaps.append(Swap(unescape(words[0]), words[1]))
    return tuple(swaps), tuple(problems)


def _resolve_devices(root: Root, paths: Iterable[str]) -> dict[str, str]:
    devices: dict[str, str] = {}
    for path in sorted(set(paths)):
        if not path.startswith("/dev/"):
            continue
        try:
            target = root.resolve(path)
        except OSError:
            continue
        if os.path.exists(root.real(target)):
            devices[path] = target
    return devices


def _read(root: Root, path: str) -> str | OSError:
    """The file's text, or why it could not be read (absent, refused, too large)."""
    try:  # /proc/self resolves to the reading process on the live root, below the root otherwise
        return root.read_text(path)
    except OSError as exc:
        return exc


def capture(root: Root, declared: MountNeeds) -> Section[MountsLive]:
    text = _read(root, HOST_MOUNTINFO) if root.is_live else None
    if not isinstance(text, str):
        text = _read(root, MOUNTINFO)
    if isinstance(text, FileNotFoundError):
        return Section.missing(Category.MOUNTS, f"{MOUNTINFO} is not readable below {root.prefix}")
    if isinstance(text, OSError):
        return Section.missing(Category.MOUNTS, f"{MOUNTINFO} cannot be read: {reason(text)}")
    if text and not text.endswith("\n"):  # the kernel ends every line: a copy cut short lost mounts
        return Section.missing(Category.MOUNTS, f"{MOUNTINFO} is cut short (its last line has no end)")
    mounts, problems = parse_mountinfo(text)
    read = _read(root, SWAPS)
    swaps_text = read if isinstance(read, str) else None
    if isinstance(read, OSError) and not isinstance(read, FileNotFoundError):
        return Section.missing(Category.MOUNTS, f"{SWAPS} cannot be read: {reason(read)}")
    swaps, swap_problems = parse_swaps(swaps_text) if swaps_text is not None else ((), ())
    if problems or swap_problems:  # the kernel writes no bad line: a damaged copy, and the line lost may matter
        damaged = (*problems, *swap_problems)
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        return Section.missing(Category.MOUNTS, f"a line the kernel wrote cannot be read: {damaged[0]}{more}")
    wanted = [declared_device(fs.device, fs.label) for fs in declared.file_systems.values()]
    wanted += [declared_device(s.device, s.label) for s in declared.swap_devices]
    live = [m.source for m in mounts] + [s.filename for s in swaps]
    devices = _resolve_devices(root, [p for p in wanted + live if p])
    return Section(Category.MOUNTS, MountsLive(mounts, swaps if swaps_text is not None else None, devices))
