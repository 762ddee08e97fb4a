"""sd_notify through sdnotify: READY, STATUS, WATCHDOG and STOPPING."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


class Notifier:
    """A no-op outside systemd (no NOTIFY_SOCKET)."""

    def __init__(self) -> None:
        self._notifier = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
        self._last_status = ""

    @property
    def watchdog_interval(self) -> float | None:
        """Half of WATCHDOG_USEC in seconds, when systemd asked for keep-alives for this process."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return max(int(usec) / 2_000_000, 0.05)
        except ValueError:
            log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
            return None

    def _send(self, state: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(state)

    def ready(self, status: str) -> None:
        self._last_status = status
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def reloading(self) -> None:
        self._send("RELOADING=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")
