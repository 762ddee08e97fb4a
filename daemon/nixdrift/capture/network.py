"""Hostname and DNS resolvers: /etc/hostname, the kernel's hostname and /etc/resolv.conf.

The kernel's hostname comes from socket.gethostname() on the live machine and from a captured
/proc/sys/kernel/hostname under `--root`.
"""

from __future__ import annotations

import socket

from nixdrift.capture.parsed import reason
from nixdrift.live.network import HOSTNAME, KERNEL_HOSTNAME, RESOLV_CONF, NetworkLive, Resolver
from nixdrift.models import Category, Section
from nixdrift.rootfs import Root

SNAPSHOT_PATHS: tuple[str, ...] = (
    HOSTNAME,
    RESOLV_CONF,
    KERNEL_HOSTNAME,
    "/run/systemd/resolve/stub-resolv.conf",
    "/run/systemd/resolve/resolv.conf",
)


def parse_resolv_conf(text: str) -> tuple[tuple[Resolver, ...], tuple[str, ...]]:
    """The nameservers of a resolv.conf; search, domain, options and comments are tolerated."""
    servers: list[Resolver] = []
    problems: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        match words:
            case ["nameserver", address]:
                servers.append(Resolver(address, lineno))
            case ["nameserver", *_]:
                problems.append(f"{RESOLV_CONF}:{lineno}: nameserver needs exactly one address")
            case ["search" | "domain" | "options" | "sortlist" | "lookup" | "family", *_]:
                pass
            case _:
                problems.append(f"{RESOLV_CONF}:{lineno}: unknown keyword {words[0][:40]!r}")
    return tuple(servers), tuple(problems)


def search_domains(text: str) -> tuple[str, ...]:
    """The last `search` (or `domain`) line wins, as in the resolver."""
    found: tuple[str, ...] = ()
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if words and words[0] in ("search", "domain"):
            found = tuple(words[1:])
    return found


class _Refused(Exception):
    """A source that exists but may not be read (a FIFO, too large, outside the root): no verdict."""


def _read(root: Root, path: str) -> str | None:
    """The file's text; None when it is absent."""
    try:
        return root.read_text(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Refused(f"{path} cannot be read: {reason(exc)}") from exc


def _first_word(text: str | None) -> str | None:
    if text is None:
        return None
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            return words[0]
    return ""


def capture(root: Root, declared: object) -> Section[NetworkLive]:
    try:
        hostname_text = _read(root, HOSTNAME)
        kernel = socket.gethostname() if root.is_live else _first_word(_read(root, KERNEL_HOSTNAME))
        resolv = _read(root, RESOLV_CONF)
    except _Refused as exc:
        return Section.missing(Category.NETWORK, str(exc))
    if hostname_text is None and kernel is None and resolv is None:
        return Section.missing(Category.NETWORK, f"none of {HOSTNAME}, {KERNEL_HOSTNAME}, {RESOLV_CONF} is readable")
    servers, problems = parse_resolv_conf(resolv) if resolv is not None else ((), ())
    live = NetworkLive(
        hostname_file=_first_word(hostname_text),
        kernel_hostname=kernel,
        nameservers=tuple(s.address for s in servers) if resolv is not None else None,
        search=search_domains(resolv) if resolv is not None else (),
        resolv_target=root.resolve(RESOLV_CONF),
    )
    return Section(Category.NETWORK, live, problems=problems)
