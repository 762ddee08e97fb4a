"""Hostname and DNS as records, and the paths they are read from."""

from __future__ import annotations

from dataclasses import dataclass

RESOLV_CONF = "/etc/resolv.conf"
HOSTNAME = "/etc/hostname"
KERNEL_HOSTNAME = "/proc/sys/kernel/hostname"


@dataclass(frozen=True, slots=True)
class Resolver:
    """One `nameserver` line."""

    address: str
    lineno: int


@dataclass(frozen=True, slots=True)
class NetworkLive:
    hostname_file: str | None  # /etc/hostname's first word, None when absent
    kernel_hostname: str | None
    nameservers: tuple[str, ...] | None  # None when resolv.conf is absent
    search: tuple[str, ...]
    resolv_target: str  # where /etc/resolv.conf leads (a host path)
