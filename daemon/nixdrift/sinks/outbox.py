"""The queue of PolicyReports not yet sent, kept in the state database so nothing is lost.

One table, `kube_outbox`, in `state_dir/nixdrift.db`; other modules own the other tables of that
file, so this module only ever creates and touches its own. Every write is one transaction, and
each call opens its own connection: the sender thread and a closing daemon can both use it safely.

Rows are never deleted before they are settled: the newest queued row of a host is sent first, and
only when it has landed are the older queued rows of that host marked `superseded` (kept, marked,
then pruned with the other settled rows).
"""

from __future__ import annotations

import enum
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

TABLE = "kube_outbox"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    generated_at TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS {TABLE}_state ON {TABLE} (state, namespace, name, id);
"""


class State(enum.Enum):
    QUEUED = "queued"  # waiting to be sent
    SENT = "sent"  # the API server accepted it
    SUPERSEDED = "superseded"  # a newer report of the same host landed first
    REJECTED = "rejected"  # the API server refused the object itself (400, 413, 422): never retried
    DROPPED = "dropped"  # too many queued while the API was away; logged, and a newer one is queued


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    namespace: str
    name: str
    generated_at: str
    body: str
    state: State
    attempts: int
    last_error: str


class Outbox:
    def __init__(self, path: Path, *, max_queued: int = 200, keep_settled: int = 50) -> None:
        self.path = path
        self.max_queued = max_queued  # per host; bounds the disk used while the API is away
        self.keep_settled = keep_settled  # settled rows kept per host, for `why was this not sent`
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._tx() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One connection, one transaction: committed on success, rolled back on error."""
        with closing(sqlite3.connect(self.path, timeout=30)) as db, db:
            yield db

    def put(self, namespace: str, name: str, generated_at: str, body: str) -> tuple[int, int]:
        """Queue a report; returns (row id, how many older queued rows were dropped to bound the queue)."""
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                f"INSERT INTO {TABLE} (namespace, name, generated_at, body, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (namespace, name, generated_at, body, now, now),
            )
            row_id = int(cur.lastrowid or 0)
            dropped = db.execute(
                f"UPDATE {TABLE} SET state = 'dropped', updated = ? WHERE state = 'queued'"
                " AND namespace = ? AND name = ? AND id NOT IN (SELECT id FROM"
                f" {TABLE} WHERE state = 'queued' AND namespace = ? AND name = ? ORDER BY id DESC LIMIT ?)",
                (now, namespace, name, namespace, name, self.max_queued),
            ).rowcount
        return row_id, dropped

    def newest_queued(self) -> Row | None:
        with self._tx() as db:
            row = db.execute(f"SELECT * FROM {TABLE} WHERE state = 'queued' ORDER BY id DESC LIMIT 1").fetchone()
        return _row(row) if row else None

    def queued_count(self) -> int:
        with self._tx() as db:
            return int(db.execute(f"SELECT count(*) FROM {TABLE} WHERE state = 'queued'").fetchone()[0])

    def mark_sent(self, row_id: int) -> int:
        """The row landed: older queued rows of the same host are superseded. Returns how many."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                f"UPDATE {TABLE} SET state = 'sent', attempts = attempts + 1, updated = ? WHERE id = ?", (now, row_id)
            )
            superseded = db.execute(
                f"UPDATE {TABLE} SET state = 'superseded', updated = ? WHERE state = 'queued' AND id < ?"
                f" AND (namespace, name) = (SELECT namespace, name FROM {TABLE} WHERE id = ?)",
                (now, row_id, row_id),
            ).rowcount
            self._prune(db, row_id)
        return superseded

    def mark_failed(self, row_id: int, error: str) -> None:
        with self._tx() as db:
            db.execute(
                f"UPDATE {TABLE} SET attempts = attempts + 1, last_error = ?, updated = ? WHERE id = ?",
                (error[:2000], time.time(), row_id),
            )

    def mark_rejected(self, row_id: int, error: str) -> None:
        with self._tx() as db:
            db.execute(
                f"UPDATE {TABLE} SET state = 'rejected', attempts = attempts + 1, last_error = ?, updated = ?"
                " WHERE id = ?",
                (error[:2000], time.time(), row_id),
            )

    def rows(self) -> tuple[Row, ...]:
        with self._tx() as db:
            return tuple(_row(r) for r in db.execute(f"SELECT * FROM {TABLE} ORDER BY id"))

    def _prune(self, db: sqlite3.Connection, row_id: int) -> None:
        """Delete settled rows of this host beyond the newest `keep_settled`; queued rows are kept."""
        db.execute(
            f"DELETE FROM {TABLE} WHERE state != 'queued'"
            f" AND (namespace, name) = (SELECT namespace, name FROM {TABLE} WHERE id = ?)"
            f" AND id NOT IN (SELECT id FROM {TABLE} WHERE state != 'queued'"
            f" AND (namespace, name) = (SELECT namespace, name FROM {TABLE} WHERE id = ?) ORDER BY id DESC LIMIT ?)",
            (row_id, row_id, self.keep_settled),
        )


def _row(r: tuple[object, ...]) -> Row:
    rid, namespace, name, generated_at, body, state, attempts, last_error, _created, _updated = r
    return Row(
        id=int(str(rid)),
        namespace=str(namespace),
        name=str(name),
        generated_at=str(generated_at),
        body=str(body),
        state=State(str(state)),
        attempts=int(str(attempts)),
        last_error=str(last_error),
    )
