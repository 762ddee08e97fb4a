"""What is degraded right now, said once when it starts and once when it ends.

Each degradation has a key (`database`, `worker`, `watch /run/systemd/system`) and a sentence.
The worker, the watcher and the main thread set and clear them; STATUS, the report's problems,
the metrics and the journal read them. A change of state is returned to the caller, who alerts
(once per start and once per recovery, never on every look).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType


class Degradations:
    """Thread-safe set of current degradations (key -> sentence)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: Mapping[str, str] = MappingProxyType({})
        self.total = 0  # degradations started since the daemon started

    def set(self, key: str, text: str) -> bool:
        """Record `key` as degraded; True when it was not degraded before."""
        with self._lock:
            new = key not in self._now
            if new or self._now[key] != text:
                self._now = MappingProxyType({**self._now, key: text})
            if new:
                self.total += 1
            return new

    def clear(self, key: str) -> str | None:
        """`key` recovered: returns what it was degraded by, or None when it was not degraded."""
        with self._lock:
            if key not in self._now:
                return None
            was = self._now[key]
            self._now = MappingProxyType({k: v for k, v in self._now.items() if k != key})
            return was

    def current(self) -> Mapping[str, str]:
        """An immutable snapshot, safe to read from any thread."""
        return self._now

    def line(self) -> str:
        now = self._now
        return "; ".join(f"{k}: {now[k]}" for k in sorted(now))
