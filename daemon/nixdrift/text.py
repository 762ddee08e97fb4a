"""Text escaping for host data, on the ground floor: capture, compare and every renderer use it.

Host data (file names, unit names, symlink targets, mount sources) is untrusted. It may hold odd
bytes (kept as surrogates by `surrogateescape`), C0 and C1 control characters (ESC starts a terminal
escape sequence, U+009B is a one-character CSI) and bidirectional controls (U+202E makes a line read
backwards). Each helper here turns it into one kind of output:

- `display()`: one printable line for people (terminals, Markdown, PolicyReports, journald);
- `printable()`: the same, with backslashes doubled too, for ids and names that must be unambiguous;
- `quote()`/`sh()`: one shell word / command line that names the exact bytes (bash's `$'...'`);
- `nix_str()`/`nix_attr()`: a Nix string or attribute name that names the exact same text.
"""

from __future__ import annotations

import json
import re

_SHELL_SAFE = re.compile(r"[A-Za-z0-9@%+=:,./_-]+")
_NIX_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*")
_NIX_KEYWORDS = frozenset({"assert", "else", "if", "in", "inherit", "let", "or", "rec", "then", "with"})


def _is_byte(code: int) -> bool:
    """An undecodable byte kept by surrogateescape (U+DC80..U+DCFF stands for byte 0x80..0xFF)."""
    return 0xDC80 <= code <= 0xDCFF


def _escape(ch: str) -> str:
    """The visible form of one character that must not reach a display raw."""
    code = ord(ch)
    if _is_byte(code):
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:  # C0 controls (ESC, BEL, newline) and DEL
        return f"\\x{code:02x}"
    # C1 controls (CSI U+009B, NEL U+0085) as \u: `\x9b` stands for the undecodable byte 0x9b
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"  # bidi, line separators, ...


def display(text: str) -> str:
    """One printable line: every character Python does not call printable (controls, bidi
    overrides and isolates, line and paragraph separators, odd bytes) as a visible escape.
    Backslashes are kept, so it can be applied twice without changing the result."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def printable(text: str) -> str:
    """A path or name as one printable, unambiguous line: like `display`, and a backslash is
    doubled so that a name holding the characters `\\x1b` differs from one holding ESC."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join("\\\\" if ch == "\\" else ch if ch.isprintable() else _escape(ch) for ch in text)


def quote(text: str) -> str:
    """One shell word for arbitrary text. Anything not printable (controls, bidi characters, odd
    bytes) is written as its bytes in bash's $'...' quoting: the word names the real file and the
    line holding it stays printable (shlex would leave raw bytes or newlines)."""
    if _SHELL_SAFE.fullmatch(text):
        return text
    if text.isprintable():
        return "'" + text.replace("'", "'\"'\"'") + "'"
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if _is_byte(code):
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code == 0:
            out.append(ch)  # no argv can hold a NUL: left raw so that renderers refuse the command
        elif ch in "\\'":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass")))
    return "$'" + "".join(out) + "'"


def sh(*argv: str) -> str:
    """A shell command line with every argument quoted (host data is never trusted)."""
    return " ".join(quote(a) for a in argv)


_NIX_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _nix_char(ch: str) -> str:
    if ch in _NIX_ESCAPES:
        return _NIX_ESCAPES[ch]
    if ch.isprintable():
        return ch
    if _is_byte(ord(ch)):  # a .nix file is text: an odd byte can only be shown, not named
        return "\\\\" + _escape(ch)[1:]
    # A Nix string has no escape for other controls: JSON does, and builtins.fromJSON reads it.
    # The interpolation keeps the snippet printable and still names the exact character.
    return "${builtins.fromJSON ''" + json.dumps(ch) + "''}"


def nix_str(text: str) -> str:
    """A Nix string literal (also valid as an attribute name) for arbitrary text: `\\`, `"` and
    `${` are escaped, so the literal names exactly `text` (except odd bytes, shown escaped)."""
    out: list[str] = []
    for i, ch in enumerate(text):
        out.append("\\$" if ch == "$" and text[i + 1 : i + 2] == "{" else _nix_char(ch))
    return '"' + "".join(out) + '"'


def nix_attr(name: str) -> str:
    """An attribute name, quoted when it is not a plain identifier."""
    return name if _NIX_IDENT.fullmatch(name) and name not in _NIX_KEYWORDS else nix_str(name)
