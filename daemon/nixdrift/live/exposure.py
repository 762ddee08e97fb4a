"""Listening sockets as records, with what the closure declares beside them (the comparator reads
no disk)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Listener:
    proto: str  # "tcp" or "udp"
    address: str
    port: int
    pid: int | None
    process: str
    unit: str  # "" when unknown (kernel sockets, vanished processes)

    def to_json(self) -> dict[str, Any]:
        return {
            "proto": self.proto,
            "address": self.address,
            "port": self.port,
            "pid": self.pid,
            "process": self.process,
            "unit": self.unit,
        }


@dataclass(frozen=True, slots=True)
class ExposureLive:
    listeners: tuple[Listener, ...]
    closure_units: frozenset[str]  # units declared or shipped by the closure
    socket_ports: frozenset[tuple[str, int]]  # (proto, port) the closure's .socket units listen on
    source: str
