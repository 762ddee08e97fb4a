"""The single place that spawns processes: logs argv, raises typed errors, is the seam tests patch."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from nixdrift.errors import CommandError, ToolMissingError

log = logging.getLogger(__name__)


def which(tool: str) -> str | None:
    return shutil.which(tool)


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 600,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv (never through a shell) and return its completed process.

    Raises ToolMissingError when argv[0] is not installed and CommandError (with stderr) when
    `check` is set and the command fails or times out.
    """
    args = list(argv)
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            errors="surrogateescape",
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            input=input_text,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolMissingError(f"{args[0]!r} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(args, -1, f"timed out after {timeout} s", f"timed out: {shlex.join(args)}") from exc
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stderr)
    return proc
