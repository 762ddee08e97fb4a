"""Who made a change: the audit log when there is one, else the journal around the change.

fanotify would name the process for certain but needs CAP_SYS_ADMIN and a listener running
before the change, so it is not used; the answer says which sources were tried and why they gave
nothing, never a guess.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from nixdrift import process
from nixdrift.errors import NixdriftError
from nixdrift.models import Category, Finding
from nixdrift.rootfs import Root

log = logging.getLogger(__name__)

AUDIT_LOG = Path("/var/log/audit/audit.log")
_AUDIT_TAIL = 4 << 20
_SERIAL = re.compile(r"msg=audit\(([0-9.]+):([0-9]+)\)")
_FIELD = re.compile(r'\b(auid|uid|comm|exe)=("[^"]*"|\S+)')
_USER_TOOLS = frozenset({"useradd", "usermod", "userdel", "groupadd", "groupmod", "groupdel", "gpasswd", "passwd"})
_UNIT_WORDS = ("enable", "disable", "mask", "Reloading", "Started", "Stopped", "Created symlink", "Removed")

Runner = Callable[..., Any]


def attribute(root: Root, finding: Finding, changed_at: float, run: Runner = process.run) -> str:
    """A one-line answer for evidence["attribution"]: who, or `unavailable: why`."""
    if not root.is_live:
        return f"unavailable: {root.prefix} is not the live host, so its audit log and journal were not read"
    reasons = ["fanotify not used (needs CAP_SYS_ADMIN and a listener running before the change)"]
    needles = _needles(finding)
    if AUDIT_LOG.exists():
        found = _from_audit(AUDIT_LOG, needles)
        if found:
            return found
        reasons.append(f"no audit record names {needles[0]}")
    else:
        reasons.append(f"no audit log ({AUDIT_LOG} absent)")
    try:
        entries = _journal(changed_at, run)
    except NixdriftError as exc:
        reasons.append(f"journal not readable: {exc}")
    else:
        found = _from_journal(entries, finding, needles)
        if found:
            return found
        reasons.append("no journal entry around the change names it")
    return "unavailable: " + "; ".join(reasons)


def _needles(f: Finding) -> list[str]:
    out = [n for n in (f.path, f.evidence.get("unit", ""), f.subject) if n]
    return out or [f.id]


def _from_audit(path: Path, needles: list[str]) -> str | None:
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            handle.seek(max(0, size - _AUDIT_TAIL))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError as exc:
        log.debug("audit log %s: %s", path, exc)
        return None
    serials = [
        m.group(2) for line in lines if any(f'name="{n}"' in line for n in needles) if (m := _SERIAL.search(line))
    ]
    if not serials:
        return None
    serial = serials[-1]
    for line in reversed(lines):
        if "type=SYSCALL" in line and (m := _SERIAL.search(line)) and m.group(2) == serial:
            fields = {k: v.strip('"') for k, v in _FIELD.findall(line)}
            who = ", ".join(f"{k} {fields[k]}" for k in ("auid", "uid", "comm", "exe") if k in fields)
            return f"{who} [audit]"
    return None


def _journal(changed_at: float, run: Runner) -> list[Mapping[str, Any]]:
    if process.which("journalctl") is None:
        raise NixdriftError("journalctl is not installed")
    argv = [
        "journalctl",
        "-o",
        "json",
        "--no-pager",
        "--since",
        f"@{int(changed_at - 120)}",
        "--until",
        f"@{int(changed_at + 5)}",
    ]
    proc = run(argv, check=False, timeout=5)
    if proc.returncode != 0:
        raise NixdriftError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "journalctl failed")
    out: list[Mapping[str, Any]] = []
    for line in proc.stdout.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def _text(value: Any) -> str:
    if isinstance(value, list):  # the journal gives non-UTF-8 values as byte lists
        return bytes(v for v in value if isinstance(v, int)).decode("utf-8", "replace")
    return str(value) if value is not None else ""


def _describe(entry: Mapping[str, Any], source: str) -> str:
    """Who: the program, uid and pid, and for sudo the user and the program it ran. Never the
    message or the command's arguments, which may carry secrets (`sudo sh -c 'echo pw=... > f'`)."""
    message = _text(entry.get("MESSAGE"))
    comm = _text(entry.get("_COMM") or entry.get("SYSLOG_IDENTIFIER")) or "?"
    uid = _text(entry.get("_UID")) or "?"
    if comm == "sudo" and " : " in message:
        user = message.split(" : ", 1)[0].strip()
        command = message.rsplit("COMMAND=", 1)[-1] if "COMMAND=" in message else ""
        program = command.split(maxsplit=1)[0] if command.strip() else "?"
        return f"user {user[:64]} via sudo: {program[:128]} [{source}]"
    return f"{comm} (uid {uid}, pid {_text(entry.get('_PID')) or '?'}) [{source}]"


def _from_journal(entries: Iterable[Mapping[str, Any]], f: Finding, needles: list[str]) -> str | None:
    best: Mapping[str, Any] | None = None
    for entry in entries:
        message = _text(entry.get("MESSAGE"))
        comm = _text(entry.get("_COMM") or entry.get("SYSLOG_IDENTIFIER"))
        named = any(n and n in message for n in needles)
        if (
            (f.category is Category.USERS and comm in _USER_TOOLS)
            or (
                f.category in (Category.SERVICES, Category.SERVICE_CONFIG)
                and named
                and any(w in message for w in _UNIT_WORDS)
            )
            or named
        ):
            best = entry
    return _describe(best, "journal") if best is not None else None
