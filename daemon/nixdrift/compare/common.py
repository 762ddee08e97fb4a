"""The one constructor comparators use for findings: severity and impact come from the policy rule."""

from __future__ import annotations

import re
from collections.abc import Mapping

from nixdrift.models import Category, Finding, Fix, Kind
from nixdrift.policy import rule

_SHELL_SAFE = re.compile(r"[A-Za-z0-9@%+=:,./_-]+")


def finding(
    *,
    rule_name: str,
    id: str,
    category: Category,
    subject: str,
    kind: Kind,
    expected: str,
    actual: str,
    message: str,
    nix: str = "",
    command: str = "",
    safe: bool = False,
    reason: str = "",
    evidence: Mapping[str, str] | None = None,
) -> Finding:
    severity, impact = rule(rule_name)
    if not safe and not reason:
        reason = "reverting by hand needs a decision" if command else "no automatic revert exists"
    return Finding(
        id=id,
        category=category,
        subject=subject,
        kind=kind,
        expected=expected,
        actual=actual,
        message=message,
        impact=impact,
        severity=severity,
        fix=Fix(nix=nix, command=command, safe=safe, reason=reason),
        evidence={"rule": rule_name, **(evidence or {})},
    )


def quote(text: str) -> str:
    """One shell word for arbitrary text. Odd bytes and control characters use bash's $'...'
    quoting so that the command names the real file (shlex would leave raw bytes or newlines)."""
    if _SHELL_SAFE.fullmatch(text):
        return text
    if all(0x20 <= ord(c) < 0x7F or (ord(c) >= 0xA0 and not 0xDC80 <= ord(c) <= 0xDCFF) for c in text):
        return "'" + text.replace("'", "'\"'\"'") + "'"
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code == 0:
            out.append(ch)  # no argv can hold a NUL: left raw so that renderers refuse the command
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch in "\\'":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


def sh(*argv: str) -> str:
    """A shell command line with every argument quoted (host data is never trusted)."""
    return " ".join(quote(a) for a in argv)


def nix_str(text: str) -> str:
    """A Nix string literal for arbitrary text."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${").replace("\n", "\\n")
    return f'"{escaped}"'


def nix_attr(name: str) -> str:
    """An attribute name, quoted when it is not a plain identifier."""
    ok = name and (name[0].isalpha() or name[0] == "_") and all(c.isalnum() or c in "_-'" for c in name)
    return name if ok else nix_str(name)


def printable(text: str) -> str:
    """A path or name as one printable line: odd bytes (kept as surrogates) and control
    characters are shown as escapes, so ids stay stable and reports stay one line per item."""
    if text.isprintable() and "\\" not in text:
        return text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
    return "".join(out)
