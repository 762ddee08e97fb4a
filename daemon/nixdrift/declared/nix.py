"""One thin function per nix command: argv -> run -> json.loads."""

from __future__ import annotations

import json
import re
from typing import Any

from nixdrift.errors import CommandError, EvaluationError
from nixdrift.process import run

NIX = ["nix", "--extra-experimental-features", "nix-command flakes"]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def attr_name(name: str) -> str:
    """Quote an attribute name for an installable's attribute path (host names may hold dots)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def error_line(stderr: str) -> str:
    """Nix's own error line (plus its `at file:line` when given), without colours."""
    lines = [_ANSI.sub("", line).rstrip() for line in stderr.splitlines()]
    for i, line in enumerate(lines):
        if line.lstrip().startswith("error:"):
            text = line.strip()
            for follow in lines[i + 1 : i + 6]:
                follow = follow.strip()
                if follow.startswith("at "):
                    return f"{text} ({follow})"
            return text
    meaningful = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("warning:")]
    return meaningful[-1] if meaningful else "nix failed without a message"


def eval_json(installable: str, apply: str | None = None, timeout: float = 900) -> Any:
    argv = [*NIX, "eval", "--json", installable]
    if apply is not None:
        argv += ["--apply", apply]
    try:
        proc = run(argv, timeout=timeout)
    except CommandError as exc:
        raise EvaluationError(f"nix eval {installable} failed: {error_line(exc.stderr)}") from exc
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"nix eval {installable} printed no JSON: {exc}") from exc


def flake_metadata(ref: str) -> dict[str, Any]:
    try:
        proc = run([*NIX, "flake", "metadata", "--json", ref], timeout=300)
    except CommandError as exc:
        raise EvaluationError(f"cannot read flake {ref}: {error_line(exc.stderr)}") from exc
    data = json.loads(proc.stdout)
    return data if isinstance(data, dict) else {}
