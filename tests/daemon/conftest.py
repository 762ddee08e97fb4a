"""Make the daemon test helpers (daemon_host, daemon_harness) importable under any import mode."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    yield
    from daemon_harness import reap

    reap()
