"""Mounts and swaps as records, and how a declared fileSystems entry names its device."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Mount:
    mount_id: int
    parent_id: int
    root: str  # the path inside the filesystem that is mounted (not "/" for a bind mount)
    mount_point: str
    options: tuple[str, ...]
    fs_type: str
    source: str
    super_options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Swap:
    filename: str
    kind: str  # "partition" or "file"


@dataclass(frozen=True, slots=True)
class MountsLive:
    mounts: tuple[Mount, ...]
    swaps: tuple[Swap, ...] | None  # None when /proc/swaps could not be read
    devices: Mapping[str, str] = field(default_factory=dict)  # device path -> the device it resolves to


def declared_device(device: str | None, label: str | None) -> str | None:
    """The device path a fileSystems or swapDevices entry names (a label is a by-label link)."""
    if device:
        return device
    return f"/dev/disk/by-label/{label}" if label else None
