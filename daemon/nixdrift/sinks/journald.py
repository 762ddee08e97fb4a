"""Journald alerts over the journal's native protocol, else one line per alert on stderr.

The native protocol is one AF_UNIX datagram per entry: `KEY=value\\n` for single-line values and
`KEY\\n<64-bit little-endian length><value>\\n` for values that hold a newline. No libsystemd.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from nixdrift.models import Finding, Severity
from nixdrift.text import display

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/run/systemd/journal/socket"
SOCKET_ENV = "NIXDRIFT_JOURNAL_SOCKET"


class Event(enum.Enum):
    """Alert types; each has a fixed MESSAGE_ID so `journalctl MESSAGE_ID=...` finds them all."""

    NEW = "new"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    SCAN_FAILED = "scan-failed"
    EVENTS_LOST = "events-lost"
    REMEDIATION_FAILED = "remediation-failed"
    DEGRADED = "degraded"  # the daemon cannot do part of its job (database, worker, a watched tree)
    RECOVERED = "recovered"  # ... and can again

    @property
    def message_id(self) -> str:
        return _MESSAGE_IDS[self]


_MESSAGE_IDS: Mapping[Event, str] = {
    Event.NEW: "4f0c6d1a8e2b4b0d9a3c5e7f21b4d6a8",
    Event.ESCALATED: "9b1e3a5c7d2f4e6a8c0b2d4f6a8c0e13",
    Event.RESOLVED: "2d7a9c1e3f5b4d6a8e0c2b4d6f8a0c25",
    Event.SCAN_FAILED: "c3e5a7b9d1f24e6a8b0d2f4a6c8e0b37",
    Event.EVENTS_LOST: "7e9a1c3b5d2f4a6c8e0b2d4f6a8c0e49",
    Event.REMEDIATION_FAILED: "a1c3e5b7d9f24a6c8e0b2d4f6c8a0e5b",
    Event.DEGRADED: "9493c09a969a4d8a88b28f920bfdd29c",
    Event.RECOVERED: "08cd90cb5ef049dd91597423937733be",
}


@dataclass(frozen=True, slots=True)
class Alert:
    event: Event
    message: str
    severity: Severity = Severity.INFO
    finding: Finding | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, event: Event, finding: Finding, why: str = "") -> Alert:
        text = f"{event.value}: {finding.message}" + (f" ({why})" if why else "")
        return cls(event=event, message=text, severity=finding.severity, finding=finding)

    def to_json(self) -> dict[str, Any]:
        """What the alert outbox stores (the history database), so a restart can still deliver it."""
        return {
            "event": self.event.value,
            "message": self.message,
            "severity": self.severity.label,
            "finding": self.finding.to_json() if self.finding is not None else None,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        finding = data.get("finding")
        return cls(
            event=Event(data["event"]),
            message=str(data["message"]),
            severity=Severity.parse(str(data["severity"])),
            finding=Finding.from_json(finding) if finding else None,
            extra={str(k): str(v) for k, v in dict(data.get("extra") or {}).items()},
        )

    def fields(self) -> dict[str, str]:
        out = {
            "MESSAGE": display(self.message),
            "MESSAGE_ID": self.event.message_id,
            "PRIORITY": str(
                self.severity.journald_priority if self.event not in (Event.RESOLVED, Event.RECOVERED) else 6
            ),
            "SYSLOG_IDENTIFIER": "nixdrift",
            "NIXDRIFT_EVENT": self.event.value,
        }
        if (f := self.finding) is not None:
            out |= {
                "NIXDRIFT_ID": f.id,
                "NIXDRIFT_CATEGORY": f.category.value,
                "NIXDRIFT_SEVERITY": f.severity.label,
                "NIXDRIFT_SUBJECT": f.subject,
                "NIXDRIFT_PATH": display(f.path),  # evidence as the comparator wrote it: made one printable line
            }
        out |= {k.upper(): v for k, v in self.extra.items()}
        return out


def encode(fields: Mapping[str, str]) -> bytes:
    """One journal entry in the native protocol."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "surrogateescape")
        name = key.encode("ascii")
        if b"\n" in data:
            out += name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name + b"=" + data + b"\n"
    return bytes(out)


def stderr_line(alert: Alert) -> str:
    f = alert.finding
    if f is None:
        return display(f"nixdrift: ALERT {alert.event.value} {alert.severity.label}: {alert.message}")
    return display(  # a terminal reads it: no escape sequence from host data reaches it
        f"nixdrift: ALERT {alert.event.value} {f.severity.label} id={f.id} "
        f"subject={f.subject} path={f.path or '-'}: {alert.message}"
    )


class JournalSink:
    """Send alerts to the journal socket when it exists, else to stderr."""

    def __init__(self, path: str | None = None, stream: TextIO | None = None) -> None:
        self.path = path or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
        self.stream = stream
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket | None:
        if self._sock is None and os.path.exists(self.path):
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        return self._sock

    def send(self, alert: Alert) -> None:
        sock = self._socket()
        if sock is not None:
            try:
                sock.sendto(encode(alert.fields()), self.path)
                return
            except OSError as exc:  # journal gone or entry too large: never lose the alert
                log.warning("journal socket %s: %s; alert goes to stderr", self.path, exc)
        stream = self.stream or sys.stderr
        print(stderr_line(alert), file=stream, flush=True)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
