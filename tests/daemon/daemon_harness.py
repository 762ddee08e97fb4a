"""Run `nixdrift daemon` as a subprocess with a real NOTIFY_SOCKET and read its alerts."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon_host import Host, build_host

ALERT = re.compile(r"^nixdrift: ALERT (\S+) (\S+) id=(\S+) subject=(.*?) path=(\S+): (.*)$")


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass(frozen=True)
class AlertLine:
    event: str
    severity: str
    id: str
    subject: str
    path: str
    message: str


class NotifySocket:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def states(self, key: str) -> list[str]:
        return [
            line.split("=", 1)[1]
            for _, m in list(self.messages)
            for line in m.splitlines()
            if line.startswith(key + "=")
        ]

    def entries(self) -> list[dict[str, str]]:
        """Datagrams as KEY=value maps (journal entries of single-line values)."""
        return [dict(line.split("=", 1) for line in m.splitlines() if "=" in line) for _, m in list(self.messages)]

    def close(self) -> None:
        self._stop = True
        self._thread.join(1)
        self.sock.close()


@dataclass
class Daemon:
    host: Host
    state: Path
    config: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    notify: NotifySocket | None = None
    wrap: list[str] = field(default_factory=list)  # argv prefix, e.g. unshare with a mount for the state

    def start(self, watchdog_usec: int | None = 1_000_000) -> Daemon:
        self.notify = NotifySocket(self.state.parent / f"notify-{time.monotonic_ns()}.sock")
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(self.notify.path),
            "NIXDRIFT_JOURNAL_SOCKET": "/nonexistent",
            **self.env,
        }
        env.pop("WATCHDOG_USEC", None)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        argv = [sys.executable, "-m", "nixdrift", "-v", "daemon", "--flake", str(self.host.flake), "--host", "demo"]
        argv += ["--root", str(self.host.root), "--state-dir", str(self.state), "--config", str(self.config)]
        self.lines = []
        self.proc = subprocess.Popen(
            [*self.wrap, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        return self

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.notify is not None
        wait_for(lambda: (self.notify and "1" in self.notify.states("READY")) or self.exited(), timeout, "READY=1")
        assert not self.exited(), "\n".join(self.lines[-30:])

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def alerts(self) -> list[AlertLine]:
        return [AlertLine(*m.groups()) for line in list(self.lines) if (m := ALERT.match(line))]

    def wait_alert(self, timeout: float = 15, **want: str) -> AlertLine:
        def match() -> AlertLine | None:
            for a in self.alerts():
                if all(want[k] in getattr(a, k) for k in want):
                    return a
            return None

        found = wait_for(match, timeout, f"an alert with {want}; got:\n" + "\n".join(self.lines[-15:]))
        assert isinstance(found, AlertLine)
        return found

    def wait_log(self, text: str, timeout: float = 15) -> str:
        found = wait_for(lambda: next((x for x in list(self.lines) if text in x), None), timeout, f"log {text!r}")
        return str(found)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5) -> float:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout)
        took = time.monotonic() - started
        if self.notify is not None:
            self.notify.close()
        return took


STARTED: list[Daemon] = []  # made by make_daemon: killed after each test if still running (conftest)


def make_daemon(tmp: Path, config: str = "alertThreshold: low\n", host: Host | None = None, **env: str) -> Daemon:
    """A daemon (not started) on a fixture host below `tmp` (or `host`), with `config` and `env`."""
    (tmp / "config.yaml").write_text(config)
    d = Daemon(host=host or build_host(tmp), state=tmp / "state", config=tmp / "config.yaml", env=dict(env))
    STARTED.append(d)
    return d


def reap() -> None:
    """A failing test must not leave its daemon running."""
    for d in STARTED:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
    STARTED.clear()
