#!/usr/bin/python3
"""The guest end of the test driver: JSON lines in on a virtio-serial port, one answer per line.

Request:  {"id": 1, "command": "systemctl is-active nixdrift", "timeout": 60}
Answer:   {"id": 1, "rc": 0, "stdout": "active\\n", "stderr": ""}
Each command runs with `bash -c` as root, one at a time; a command that outlives its timeout is
killed and answers rc 124, as timeout(1) would. Stdlib only (the guest's /usr/bin/python3).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

PORT = "/dev/virtio-ports/driver"
ENV = {"PATH": "/opt/nixdrift/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME": "/root", "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}  # fmt: skip


def answer(request: dict[str, object]) -> dict[str, object]:
    command = str(request.get("command", ""))
    timeout = float(request.get("timeout") or 900)  # type: ignore[arg-type]
    try:
        proc = subprocess.run(["bash", "-c", command], capture_output=True, timeout=timeout, env=ENV, check=False)
    except subprocess.TimeoutExpired as exc:
        out, err, rc = exc.stdout or b"", (exc.stderr or b"") + b"\nagent: timed out\n", 124
    else:
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    text = {"stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace")}
    return {"id": request.get("id"), "rc": rc, **text}


def serve(fd: int) -> None:
    buffer = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:  # the host end is not connected: wait for it
            time.sleep(0.2)
            continue
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError:
                reply: dict[str, object] = {"id": None, "rc": 2, "stdout": "", "stderr": "agent: bad request\n"}
            else:
                reply = answer(request)
            data = (json.dumps(reply) + "\n").encode()
            while data:
                data = data[os.write(fd, data) :]


def main() -> None:
    fd = os.open(PORT, os.O_RDWR)
    serve(fd)


if __name__ == "__main__":
    main()
