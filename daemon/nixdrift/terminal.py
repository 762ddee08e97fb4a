"""Whether to colour what a person reads: `--color auto` follows the conventions terminals share.

Standard library only, and not typing: `nixdrift.quick` decides the colour of a check's answer with
it before anything else is loaded."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TextIO

CHOICES = ("auto", "always", "never")
HELP = "colour the text output (auto: only on a terminal, and not when NO_COLOR is set or TERM=dumb)"


def use_color(choice: str, stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """`always` and `never` are the user's word; `auto` colours a terminal unless NO_COLOR holds
    any non-empty value (no-color.org) or TERM is `dumb` (a terminal that cannot show escapes)."""
    env = os.environ if environ is None else environ
    if choice != "auto":
        return choice == "always"
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False
