"""Per-category full-scan intervals: events are hints, these scans are the truth."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from nixdrift.models import Category


class Schedule:
    """When each category was last captured in full and when it is due again (monotonic clock)."""

    def __init__(self, intervals: Mapping[Category, int]) -> None:
        self.intervals = dict(intervals)
        self._last: dict[Category, float] = {}

    def mark(self, categories: Iterable[Category], at: float | None = None) -> None:
        stamp = time.monotonic() if at is None else at
        for c in categories:
            self._last[c] = stamp

    def due(self, now: float | None = None) -> frozenset[Category]:
        now = time.monotonic() if now is None else now
        return frozenset(
            c for c, every in self.intervals.items() if c not in self._last or now - self._last[c] >= every
        )

    def next_in(self, now: float | None = None) -> float:
        """Seconds until the next category is due (0 when one is due now)."""
        now = time.monotonic() if now is None else now
        waits = [
            0.0 if c not in self._last else max(0.0, self._last[c] + every - now) for c, every in self.intervals.items()
        ]
        return min(waits, default=3600.0)
