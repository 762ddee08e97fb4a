"""Secrets that host data carries by accident, removed before a value is shown, stored or sent.

- `strip_userinfo()`: the `user:password@` of any URL-like value (`postgres://admin:pw@db/prod`,
  a mount source `curlftpfs#ftp://bob:pw@ftp.example`, a git remote) is dropped.
- `value_digest()`: a value that must still be compared but never shown (a unit's ExecStart=,
  Environment=) as a marked sha256; a value that already is one is kept, so a snapshot's reduced
  unit file and the closure's original compare equal when the original values are equal.
"""

from __future__ import annotations

import hashlib
import re

# scheme://[user[:password]]@host: the user part stops at the first / ? #, the password may hold
# anything but whitespace and @ (people do write unescaped slashes into passwords).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@]*(?::[^\s@]*)?@")
DIGEST_PREFIX = "nixdrift-sha256:"


def strip_userinfo(text: str) -> str:
    """The text with the credentials of every URL in it removed (`scheme://host/...`)."""
    if "@" not in text or "://" not in text:
        return text
    return _USERINFO.sub(r"\g<scheme>", text)


def value_digest(value: str) -> str:
    """A value as `nixdrift-sha256:<hex>` (a value that already is a digest stays as it is)."""
    if value.startswith(DIGEST_PREFIX):
        return value
    return DIGEST_PREFIX + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
