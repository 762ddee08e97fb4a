"""Listening sockets with their owning process and systemd unit.

Live: psutil (TCP in LISTEN, UDP bound without a peer), the unit read from /proc/<pid>/cgroup.
Under `--root`: DIR/.nixdrift/listening.json, a list of {proto, address, port, pid, process, unit}.

The comparator may not read the disk, so the record also carries what the closure declares:
its unit names, and the ports its socket units listen on (systemd itself, pid 1, holds those
sockets for socket-activated services).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from nixdrift.capture import closure
from nixdrift.capture.needs import ClosureUnits
from nixdrift.capture.parsed import Parsed, reason
from nixdrift.live.exposure import ExposureLive, Listener
from nixdrift.models import Category, Section
from nixdrift.rootfs import SNAPSHOT_DIR, Root

SNAPSHOT_PATHS: tuple[str, ...] = ()  # not files: see snapshot_extra
LISTENING_FILE = "listening.json"
_UNIT_SUFFIXES = (".service", ".scope", ".socket")


def unit_from_cgroup(text: str) -> str:
    """The unit a process runs in: the last .service/.scope/.socket component of its cgroup path.

    The unified hierarchy ("0::/system.slice/nginx.service") is preferred, then systemd's named
    v1 hierarchy. A login session gives "session-3.scope".
    """
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths.setdefault(parts[1], parts[2])
    path = paths.get("") or paths.get("name=systemd") or next(iter(paths.values()), "")
    for component in reversed(path.split("/")):
        if component.endswith(_UNIT_SUFFIXES):
            return component
    return ""


def parse_listening(text: str) -> tuple[tuple[Listener, ...], tuple[str, ...]]:
    """The records of a captured listening.json; a bad entry is a problem, the rest is kept."""
    parsed = read_listening(text)
    return parsed.records, parsed.all_problems


def read_listening(text: str) -> Parsed[Listener]:
    """The records and problems of a captured listening.json; `unreadable` when it is not a list at all."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Parsed((), (), f"{LISTENING_FILE}:1: not JSON (cut short?): {str(exc)[:120]}")
    if not isinstance(doc, list):
        return Parsed((), (), f"{LISTENING_FILE}:1: not a list")
    found: list[Listener] = []
    problems: list[str] = []
    for index, item in enumerate(doc, 1):
        try:
            found.append(_listener(item))
        except (TypeError, ValueError, KeyError) as exc:
            problems.append(f"{LISTENING_FILE}:{index}: {str(exc)[:120]}")
    return Parsed(tuple(found), tuple(problems))


def _listener(item: Any) -> Listener:
    if not isinstance(item, dict):
        raise ValueError("entry is not an object")
    proto = str(item["proto"])
    port, pid = item["port"], item.get("pid")
    if proto not in ("tcp", "udp"):
        raise ValueError(f"proto {proto[:20]!r} is not tcp or udp")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"bad port {str(port)[:20]}")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
        raise ValueError(f"bad pid {str(pid)[:20]}")
    return Listener(proto, str(item["address"]), port, pid, str(item.get("process") or ""), str(item.get("unit") or ""))


def _proc_unit(pid: int) -> str:
    try:
        return unit_from_cgroup(Root().read_text(f"/proc/{pid}/cgroup", limit=1 << 20))
    except OSError:
        return ""


def live_listeners() -> Iterator[Listener]:
    """The running machine's listeners (needs root to see other users' processes)."""
    names: dict[int, str] = {}
    for conn in psutil.net_connections(kind="inet"):
        if conn.type == socket.SOCK_STREAM and conn.status != psutil.CONN_LISTEN:
            continue
        if conn.type == socket.SOCK_DGRAM and conn.raddr:
            continue  # a connected UDP socket is a client
        if not conn.laddr:
            continue
        proto = "tcp" if conn.type == socket.SOCK_STREAM else "udp"
        pid = conn.pid
        if pid is not None and pid not in names:
            try:
                names[pid] = psutil.Process(pid).name()
            except psutil.Error:
                names[pid] = ""
        process = names.get(pid, "") if pid is not None else ""
        unit = _proc_unit(pid) if pid is not None else ""
        yield Listener(proto, str(conn.laddr.ip), int(conn.laddr.port), pid, process, unit)


def _listen_port(value: str) -> int | None:
    """The port of a ListenStream=/ListenDatagram= value; None for unix, vsock, netlink."""
    value = value.strip()
    if value.startswith(("/", "@")) or (":" in value and value.split(":", 1)[0].isalpha()):
        return None
    port = value.rsplit(":", 1)[-1] if ":" in value else value
    return int(port) if port.isdigit() and int(port) <= 65535 else None


def socket_ports(root: Root, declared: ClosureUnits) -> frozenset[tuple[str, int]]:
    """(proto, port) pairs the closure's socket units listen on."""
    units = closure.unit_dir(root, declared)
    found: set[tuple[str, int]] = set()
    if units is None or not declared.toplevel:
        return frozenset()
    for entry in sorted(os.scandir(units), key=lambda e: e.name):
        if not entry.name.endswith(".socket"):
            continue
        try:  # through the root: a unit is a link to another store path, resolved as the host would
            text = root.read_text(f"{declared.toplevel}/etc/systemd/system/{entry.name}")
        except OSError:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            proto = {"ListenStream": "tcp", "ListenDatagram": "udp"}.get(key.strip())
            port = _listen_port(value) if sep and proto else None
            if proto and port is not None:
                found.add((proto, port))
    return frozenset(found)


def capture(root: Root, declared: ClosureUnits) -> Section[ExposureLive]:
    problems: tuple[str, ...] = ()
    if root.is_live:
        listeners, source = tuple(live_listeners()), "psutil"
    else:
        path = root.captured(LISTENING_FILE)
        try:
            text = root.read_captured(LISTENING_FILE).decode("utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return Section.missing(Category.EXPOSURE, f"no listening sockets: {path} is absent")
        except OSError as exc:
            return Section.missing(Category.EXPOSURE, f"{path} cannot be read: {reason(exc)}")
        parsed = read_listening(text)
        if parsed.unreadable is not None or parsed.problems:
            # one entry unread may be the one listener that matters: no verdict from the rest
            why = parsed.unreadable or f"{len(parsed.problems)} entries cannot be read, first {parsed.problems[0]}"
            return Section.missing(Category.EXPOSURE, f"{path} is damaged: {why}")
        listeners, source = parsed.records, str(path)
    live = ExposureLive(
        listeners=tuple(sorted(set(listeners), key=lambda x: (x.proto, x.port, x.address, x.pid or 0))),
        closure_units=closure.unit_names(root, declared),
        socket_ports=socket_ports(root, declared),
        source=source,
    )
    return Section(Category.EXPOSURE, live, problems=problems)


def snapshot_extra(out_dir: Path) -> list[str]:
    """Write the live listeners to OUT/.nixdrift/listening.json; the names written."""
    try:
        listeners = sorted(set(live_listeners()), key=lambda x: (x.proto, x.port, x.address, x.pid or 0))
    except (psutil.Error, OSError):  # no /proc or no permission: the source is then absent
        return []
    target = out_dir / SNAPSHOT_DIR / LISTENING_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps([x.to_json() for x in listeners], indent=2, sort_keys=True) + "\n")
    return [LISTENING_FILE]
