"""One daemon per state directory: an advisory lock held for the daemon's whole life.

Two daemons on one history database would both record and alert every change (and the repeated-drift
rule would then escalate it). The lock is `fcntl.flock` on `daemon.lock` in the state directory:
the kernel drops it when the process dies, even by SIGKILL, so there is no stale lock to clean.
CLI readers (`history`, `report`, `accept`) never take it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from nixdrift.errors import NixdriftError

LOCK_NAME = "daemon.lock"


class StateLock:
    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def acquire(cls, state_dir: Path) -> StateLock:
        """Take the lock or raise NixdriftError naming the daemon that holds it."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise NixdriftError(
                f"another nixdrift daemon (pid {holder}) is already running on the state directory {state_dir}"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = -1
