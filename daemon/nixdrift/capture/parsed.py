"""What a parser of a whole source returns: its records, the entries it could not read, and whether
the source as a whole could not be read.

A problem with one entry is reported and the rest is kept. A source that cannot be read as a whole
(not JSON, cut short, not the expected shape) is `unreadable`: its category is then unavailable,
never "ok" or a verdict drawn from what little was read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    records: tuple[T, ...]
    problems: tuple[str, ...] = ()  # entries that were skipped, each "<source>:<line>: <why>"
    unreadable: str | None = None  # why the source as a whole could not be read
    notes: tuple[str, ...] = ()  # worth saying, but nothing was skipped (an unknown format version)
    # skipped entries (also in `problems`) that leave the source unjudged: a firewall rule that
    # accepts traffic on ports it could not read may be the one port opened by hand
    voiding: tuple[str, ...] = ()

    @property
    def unjudged(self) -> str | None:
        """Why no verdict may be drawn from this source: unreadable, or an entry that mattered was skipped."""
        if self.unreadable is not None:
            return self.unreadable
        if self.voiding:
            more = f" (and {len(self.voiding) - 1} more)" if len(self.voiding) > 1 else ""
            return f"{self.voiding[0]}{more}"
        return None

    @property
    def all_problems(self) -> tuple[str, ...]:
        """Every line for the report: notes, skipped entries, and why the source was unreadable."""
        return (*self.notes, *self.problems, *((self.unreadable,) if self.unreadable is not None else ()))


def reason(exc: OSError) -> str:
    """An OSError in words for an `unavailable:` line (`a FIFO, not a regular file`, `Permission denied`)."""
    return exc.strerror or str(exc) or type(exc).__name__
