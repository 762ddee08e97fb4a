"""A `Machine` with the NixOS test driver's calls, talking to the guest agent over virtio-serial.

Only the calls the scenario uses: succeed, fail, execute, wait_for_unit, wait_until_succeeds,
with the driver's semantics (succeed raises on a non-zero exit; wait_* poll until a deadline and
raise when it passes; wait_for_unit raises at once when the unit has failed).
"""

from __future__ import annotations

import itertools
import json
import socket
import time


class MachineError(Exception):
    pass


class Machine:
    def __init__(self, socket_path: str, name: str = "machine") -> None:
        self.name = name
        self.socket_path = socket_path
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buffer = b""

    # --- transport ---------------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.socket_path)
            self._sock = sock
        return self._sock

    def _request(self, command: str, timeout: float, grace: float = 30) -> dict[str, object]:
        sock = self._connect()
        rid = next(self._ids)
        sock.sendall((json.dumps({"id": rid, "command": command, "timeout": timeout}) + "\n").encode())
        deadline = time.monotonic() + timeout + grace  # the agent kills the command at `timeout`
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                reply: dict[str, object] = json.loads(line)
                if reply.get("id") == rid:
                    return reply
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from the guest agent to {command!r}")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                raise MachineError("the guest agent's port closed")
            self._buffer += chunk

    def wait_for_agent(self, timeout: float) -> float:
        """Block until the guest's agent answers; returns the seconds waited."""
        started = time.monotonic()
        while True:
            try:
                self._request("true", timeout=2, grace=3)
                return time.monotonic() - started
            except (TimeoutError, OSError):
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"the guest agent did not answer within {timeout:.0f} s") from None
                self.close()
                time.sleep(1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buffer = b""

    # --- the NixOS test driver's calls ----------------------------------------------------------
    def execute(self, command: str, check_return: bool = True, timeout: float | None = 900) -> tuple[int, str]:
        reply = self._request(command, timeout or 900)
        self.last_stderr = str(reply["stderr"])
        return int(reply["rc"]), str(reply["stdout"])  # type: ignore[call-overload]

    def succeed(self, *commands: str, timeout: float | None = None) -> str:
        output = ""
        for command in commands:
            rc, out = self.execute(command, timeout=timeout)
            if rc != 0:
                raise MachineError(f"command `{command}` failed (exit code {rc}):\n{out}{self.last_stderr}")
            output += out
        return output

    def fail(self, *commands: str, timeout: float | None = None) -> str:
        output = ""
        for command in commands:
            rc, out = self.execute(command, timeout=timeout)
            if rc == 0:
                raise MachineError(f"command `{command}` unexpectedly succeeded")
            output += out
        return output

    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.execute(command, timeout=max(5.0, deadline - time.monotonic()))
            if rc == 0:
                return out
            if time.monotonic() > deadline:
                raise MachineError(f"`{command}` did not succeed within {timeout} s:\n{out}{self.last_stderr}")
            time.sleep(0.5)

    def get_unit_info(self, unit: str) -> dict[str, str]:
        out = self.succeed(f"systemctl show --no-pager {unit}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: int = 900) -> None:
        deadline = time.monotonic() + timeout
        while True:
            info = self.get_unit_info(unit)
            state = info.get("ActiveState", "")
            if state == "active":
                return
            if state == "failed":
                raise MachineError(f'unit "{unit}" reached state "failed"')
            if state == "inactive" and info.get("LoadState") == "not-found":
                raise MachineError(f'unit "{unit}" does not exist')
            if time.monotonic() > deadline:
                raise MachineError(f'unit "{unit}" is still "{state}" after {timeout} s')
            time.sleep(1)
