"""The daemon's memory: SQLite in the state directory (WAL, one transaction per write).

Tables: scans, findings (first/last seen, count of appearances, resolved time), appearances (for
the repeated-drift rule), accepted baselines, events (what `nixdrift history` shows) and
remediation actions. Rows are only ever added or updated; a corrupt file is moved aside, never
deleted.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixdrift.errors import NixdriftError
from nixdrift.models import Finding, Report, Severity

log = logging.getLogger(__name__)


def now_iso() -> str:
    """pipeline.now_iso's format; not imported from there, so that `history` and `accept` do not
    load the pipeline and every collector just to read the database."""
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


DB_NAME = "history.db"
DAY = 86400.0
PAGE = 2000  # findings read from the database at a time: what a reader holds, whatever the total
META_PIECE = 1 << 20  # bytes of a large meta value copied at a time

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scans(
  seq INTEGER PRIMARY KEY, started TEXT NOT NULL, finished TEXT, categories TEXT NOT NULL,
  reason TEXT NOT NULL, ok INTEGER, error TEXT, duration REAL);
CREATE TABLE IF NOT EXISTS findings(
  id TEXT PRIMARY KEY, category TEXT NOT NULL, severity TEXT NOT NULL, actual TEXT NOT NULL,
  data TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, count INTEGER NOT NULL,
  resolved_at TEXT);
CREATE INDEX IF NOT EXISTS findings_open ON findings(category, id) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS findings_rank ON findings(severity, id) WHERE resolved_at IS NULL;
CREATE TABLE IF NOT EXISTS appearances(id TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS appearances_id ON appearances(id, at);
CREATE TABLE IF NOT EXISTS accepted(id TEXT PRIMARY KEY, actual TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(
  seq INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, finding_id TEXT, category TEXT,
  severity TEXT, path TEXT, detail TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS events_at ON events(at);
CREATE TABLE IF NOT EXISTS alerts(
  seq INTEGER PRIMARY KEY, at TEXT NOT NULL, body TEXT NOT NULL, delivered_at TEXT);
CREATE INDEX IF NOT EXISTS alerts_undelivered ON alerts(delivered_at, seq);
CREATE TABLE IF NOT EXISTS remediations(
  seq INTEGER PRIMARY KEY, at TEXT NOT NULL, finding_id TEXT NOT NULL, command TEXT NOT NULL,
  returncode INTEGER, output TEXT NOT NULL DEFAULT '', verified INTEGER);
"""


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    at: str
    kind: str
    finding_id: str | None
    category: str | None
    severity: str | None
    path: str | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "id": self.finding_id,
            "category": self.category,
            "severity": self.severity,
            "path": self.path,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Remediation:
    seq: int
    at: str
    finding_id: str
    command: str
    returncode: int | None
    output: str
    verified: bool | None


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime())


class Store:
    """One connection, shared between threads under a lock."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0  # transactions nested on the thread holding the lock join the outermost

    @classmethod
    def open(cls, state_dir: Path, *, repair: bool = True) -> Store:
        """Open (or create) the database. Only the daemon repairs (`repair`): a file that is not a
        database or is malformed is moved aside and a fresh one started. A database that merely
        cannot be opened now (permissions, a lock, a newer schema) is never moved: that is an error."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / DB_NAME
        try:
            return cls(_connect(path), path)
        except sqlite3.OperationalError as exc:
            raise NixdriftError(f"cannot open the history database {path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            if not repair:
                raise NixdriftError(
                    f"the history database {path} is corrupt ({exc}); the daemon moves it aside at its next start"
                ) from None
            aside = path.with_name(f"{path.name}.corrupt-{_stamp()}")
            log.error("history database %s is unreadable (%s); moved it to %s and started a new one", path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(path) + suffix)
                if src.exists():
                    src.rename(Path(str(aside) + suffix))
            return cls(_connect(path), path)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction. A `tx()` inside another (same thread: the lock is held) joins it, so a
        caller can make several writes (a finding, its event, its alert) commit or fail together."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                with self.conn:
                    yield self.conn
            finally:
                self._depth = 0

    # meta ---------------------------------------------------------------------------------------
    def put_meta(self, key: str, value: str) -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    def put_meta_file(self, key: str, path: Path) -> None:
        """A large value (the published report) copied from a file into its row a piece at a time:
        never whole in memory, neither here nor in SQLite's bindings. Stored as UTF-8 bytes."""
        size = path.stat().st_size
        with self.tx() as c, path.open("rb") as src:
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, zeroblob(?))", (key, size))
            rowid = c.execute("SELECT rowid FROM meta WHERE key = ?", (key,)).fetchone()[0]
            with c.blobopen("meta", "value", rowid) as blob:
                while piece := src.read(META_PIECE):
                    blob.write(piece)

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if not row:
            return None
        return row[0].decode("utf-8") if isinstance(row[0], bytes) else str(row[0])

    # scans --------------------------------------------------------------------------------------
    def begin_scan(self, categories: Iterable[str], reason: str) -> int:
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO scans(started, categories, reason) VALUES(?, ?, ?)",
                (now_iso(), ",".join(sorted(categories)), reason),
            )
            return int(cur.lastrowid or 0)

    def end_scan(self, seq: int, ok: bool, error: str | None, duration: float) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE scans SET finished = ?, ok = ?, error = ?, duration = ? WHERE seq = ?",
                (now_iso(), int(ok), error, duration, seq),
            )

    def interrupted_scans(self) -> list[tuple[int, str, str]]:
        """Scans that started and never finished (the daemon died in the middle)."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT seq, started, categories FROM scans WHERE finished IS NULL ORDER BY seq"
            ).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def close_interrupted(self) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE scans SET finished = ?, ok = 0, error = 'interrupted' WHERE finished IS NULL", (now_iso(),)
            )

    # findings -----------------------------------------------------------------------------------
    def active(self) -> dict[str, Finding]:
        """Unresolved findings as last recorded, with their first/last seen and count."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT data, first_seen, last_seen, count FROM findings WHERE resolved_at IS NULL"
            ).fetchall()
        out: dict[str, Finding] = {}
        for data, first, last, count in rows:
            f = Finding.from_json(json.loads(data)).with_(first_seen=first, last_seen=last, count=int(count))
            out[f.id] = f
        return out

    def active_keys(self, categories: Iterable[str]) -> Iterator[tuple[str, str, str, bool]]:
        """(id, category, severity, accepted) of each unresolved finding of these categories, read a
        page at a time: what the daemon keeps in memory of its active findings."""
        columns = "id, category, severity, json_extract(data, '$.accepted')"
        for page in self._unresolved(columns, categories):
            for i, c, sev, acc in page:
                yield str(_s(i)), str(c), str(sev), bool(acc)

    def active_pages(self, categories: Iterable[str]) -> Iterator[list[tuple[str, Any]]]:
        """The unresolved findings of these categories in id order, a page of (id, row) at a time,
        each page read whole before the caller writes: a reconcile of 100,000 known findings holds
        one page. `row` is parsed by `finding_of` only when needed."""
        for page in self._unresolved("id, data, first_seen, last_seen, count, basis", categories):
            yield [(str(_s(r[0])), r) for r in page]

    def _unresolved(self, columns: str, categories: Iterable[str]) -> Iterator[list[Any]]:
        """`columns` (the first is the id) of the unresolved findings of these categories, in id
        order, PAGE rows at a time (keyset paging: each page is read whole, under the lock)."""
        cats = sorted(categories)
        if not cats:
            return
        marks = ",".join("?" * len(cats))
        sql = (
            f"SELECT {columns} FROM findings"
            f" WHERE resolved_at IS NULL AND category IN ({marks}) AND id > ? ORDER BY id LIMIT {PAGE}"
        )
        last: Any = ""
        while True:
            with self._lock:
                rows = self.conn.execute(sql, (*cats, last)).fetchall()
            if rows:
                yield rows
            if len(rows) < PAGE:
                return
            last = rows[-1][0]

    def active_by_id(self, ids: Iterable[str]) -> dict[str, Finding]:
        """These unresolved findings (those that are), read a page at a time."""
        return {i: finding_of(r) for i, r in self.active_rows(ids).items()}

    def active_rows(self, ids: Iterable[str]) -> dict[str, Any]:
        """id -> row (id, data, first_seen, last_seen, count, basis) of these unresolved findings."""
        out: dict[str, Any] = {}
        wanted = [_t(i) for i in ids]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self.conn.execute(
                    "SELECT id, data, first_seen, last_seen, count, basis, category FROM findings"
                    f" WHERE resolved_at IS NULL AND id IN ({marks})",
                    chunk,
                ).fetchall()
            out.update((str(_s(r[0])), r) for r in rows)
        return out

    def active_below(self, category: str, prefixes: Iterable[str]) -> Iterator[list[Any]]:
        """Rows (id, data, first_seen, last_seen, count, basis) of the unresolved findings of a
        category whose id starts with one of the prefixes, a page at a time: an index range per
        prefix (an edit among 100,000 findings reads its own; a directory's, all below it)."""
        sql = (
            "SELECT id, data, first_seen, last_seen, count, basis FROM findings"
            f" WHERE id > ? AND id < ? AND resolved_at IS NULL AND category = ? ORDER BY id LIMIT {PAGE}"
        )
        for prefix in sorted(set(prefixes)):
            raw = prefix.encode("utf-8", "surrogateescape")
            text = _t(prefix)
            ranges: list[tuple[Any, Any]] = [(raw, raw + b"\xff")]  # a name not UTF-8 is stored as bytes
            if isinstance(text, str):
                ranges.append((text, text + "\U0010ffff"))
            for low, high in ranges:
                with self._lock:  # the prefix itself (id = prefix) first, then what is below it
                    rows = self.conn.execute(
                        "SELECT id, data, first_seen, last_seen, count, basis FROM findings"
                        " WHERE id = ? AND resolved_at IS NULL AND category = ?",
                        (low, category),
                    ).fetchall()
                if rows:
                    yield rows
                after = low
                while True:
                    with self._lock:
                        rows = self.conn.execute(sql, (after, high, category)).fetchall()
                    if rows:
                        yield rows
                    if len(rows) < PAGE:
                        break
                    after = rows[-1][0]

    def active_ids(self, categories: Iterable[str]) -> Iterator[list[str]]:
        """The ids of the unresolved findings of these categories, a page at a time, in id order."""
        for page in self._unresolved("id", categories):
            yield [str(_s(r[0])) for r in page]

    def active_sorted(self, categories: Iterable[str], parse: bool = True) -> Iterator[Any]:
        """The unresolved findings of these categories most severe first, then by id (the report's
        order), a page at a time, along an index (no sort); rows (id, data, first_seen, last_seen,
        count, severity, category) unless `parse`."""
        cats = sorted(categories)
        if not cats:
            return
        marks = ",".join("?" * len(cats))
        sql = (
            "SELECT id, data, first_seen, last_seen, count, severity, category FROM findings"
            f" WHERE resolved_at IS NULL AND severity = ? AND id > ? AND category IN ({marks})"
            f" ORDER BY id LIMIT {PAGE}"
        )
        for severity in sorted(Severity, reverse=True):
            last: Any = ""
            while True:
                with self._lock:
                    rows = self.conn.execute(sql, (severity.label, last, *cats)).fetchall()
                for r in rows:
                    yield finding_of(r) if parse else r
                if len(rows) < PAGE:
                    break
                last = rows[-1][0]

    def appear(self, finding: Finding, at: float | None = None, basis: int | None = None) -> tuple[Finding, int]:
        """Record a new appearance (with the digest of what its comparator said, `basis`); return the
        finding with its history and appearances in 24 h."""
        return self.appear_many([(finding, basis)], at)[0]

    def appear_many(
        self, items: list[tuple[Finding, int | None]], at: float | None = None
    ) -> list[tuple[Finding, int]]:
        """`appear` for a page of findings (distinct ids) in a few statements, not four each."""
        at = time.time() if at is None else at
        stamp = now_iso()
        ids = [_t(f.id) for f, _basis in items]
        with self.tx() as c:
            prior: dict[Any, tuple[str, int]] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for i, first, count in c.execute(
                    f"SELECT id, first_seen, count FROM findings WHERE id IN ({marks})", chunk
                ):
                    prior[i] = (str(first), int(count))
            stored = []
            for (f, _basis), key in zip(items, ids, strict=True):
                first, count = (prior[key][0], prior[key][1] + 1) if key in prior else (stamp, 1)
                stored.append(f.with_(first_seen=first, last_seen=stamp, count=count))
            c.executemany(
                "INSERT OR REPLACE INTO findings(id, category, severity, actual, data, first_seen, last_seen, count,"
                " resolved_at, basis) VALUES(?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                [(*_row(f), basis) for f, (_f, basis) in zip(stored, items, strict=True)],
            )
            c.executemany("INSERT INTO appearances(id, at) VALUES(?, ?)", [(key, at) for key in ids])
            recent: dict[Any, int] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for i, n in c.execute(
                    f"SELECT id, COUNT(*) FROM appearances WHERE id IN ({marks}) AND at > ? GROUP BY id",
                    (*chunk, at - DAY),
                ):
                    recent[i] = int(n)
        return [(f, recent.get(key, 1)) for f, key in zip(stored, ids, strict=True)]

    def seen(self, findings: Iterable[Finding], bases: Mapping[str, int] | None = None) -> None:
        """Refresh still-active findings (last seen, actual value, severity) in one transaction; the
        digest of what the comparator said is `bases[id]`, or unknown (NULL: compared afresh)."""
        bases = bases or {}
        with self.tx() as c:
            c.executemany(
                "UPDATE findings SET severity = ?, actual = ?, data = ?, last_seen = ?, basis = ? WHERE id = ?",
                [
                    (
                        f.severity.label,
                        _t(f.actual),
                        json.dumps(f.to_json(), sort_keys=True),
                        f.last_seen,
                        bases.get(f.id),
                        _t(f.id),
                    )
                    for f in findings
                ],
            )

    def set_bases(self, bases: Iterable[tuple[str, int]]) -> None:
        """The digest of what the comparator said of findings whose record did not change."""
        with self.tx() as c:
            c.executemany("UPDATE findings SET basis = ? WHERE id = ?", [(b, _t(i)) for i, b in bases])

    def resolve(self, ids: Iterable[str]) -> None:
        stamp = now_iso()
        with self.tx() as c:
            c.executemany(
                "UPDATE findings SET resolved_at = ? WHERE id = ? AND resolved_at IS NULL",
                [(stamp, _t(i)) for i in ids],
            )

    def all_findings(self) -> list[tuple[Finding, str | None]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT data, first_seen, last_seen, count, resolved_at FROM findings ORDER BY id"
            ).fetchall()
        return [
            (Finding.from_json(json.loads(d)).with_(first_seen=a, last_seen=b, count=int(n)), r)
            for d, a, b, n, r in rows
        ]

    # accepted baselines -------------------------------------------------------------------------
    def accepted(self) -> dict[str, tuple[str, str]]:
        """id -> (accepted actual value, reason)."""
        with self._lock:
            rows = self.conn.execute("SELECT id, actual, reason FROM accepted").fetchall()
        return {str(_s(i)): (str(_s(a)), str(_s(r))) for i, a, r in rows}

    def accept(self, findings: Iterable[Finding], reason: str) -> list[str]:
        stamp = now_iso()
        done: list[str] = []
        with self.tx() as c:
            for f in findings:
                c.execute(
                    "INSERT OR REPLACE INTO accepted(id, actual, reason, at) VALUES(?, ?, ?, ?)",
                    (_t(f.id), _t(f.actual), reason, stamp),
                )
                c.execute(
                    "INSERT INTO events(at, kind, finding_id, category, severity, path, detail)"
                    " VALUES(?, 'accepted', ?, ?, ?, ?, ?)",
                    (stamp, _t(f.id), f.category.value, f.severity.label, _t(f.path), _t(reason)),
                )
                done.append(f.id)
        return done

    def touch(self, categories: Iterable[str], stamp: str) -> None:
        """Last seen of every active finding of these categories: one statement, no row rewritten."""
        cats = sorted(categories)
        if cats:
            with self.tx() as c:
                marks = ",".join("?" * len(cats))
                c.execute(
                    f"UPDATE findings SET last_seen = ? WHERE resolved_at IS NULL AND category IN ({marks})",
                    (stamp, *cats),
                )

    # alerts: the outbox journald is fed from ---------------------------------------------------
    def queue_alerts(self, bodies: Iterable[str]) -> None:
        """Alerts to deliver, written in the caller's transaction with the change they announce."""
        stamp = now_iso()
        with self.tx() as c:
            c.executemany("INSERT INTO alerts(at, body) VALUES(?, ?)", [(stamp, b) for b in bodies])

    def undelivered(self, limit: int = 100) -> list[tuple[int, str]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT seq, body FROM alerts WHERE delivered_at IS NULL ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def delivered(self, seqs: Iterable[int]) -> None:
        stamp = now_iso()
        with self.tx() as c:
            c.executemany("UPDATE alerts SET delivered_at = ? WHERE seq = ?", [(stamp, q) for q in seqs])
            c.execute(  # delivered alerts are kept a week, for `why did I get this`
                "DELETE FROM alerts WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7 * DAY)),),
            )

    # events -------------------------------------------------------------------------------------
    def events(self, rows: Iterable[tuple[str, Finding | None, str, str]]) -> None:
        """Record (kind, finding or None, path, detail) rows in one transaction."""
        stamp = now_iso()
        values = [
            (
                stamp,
                kind,
                _t(f.id) if f else None,
                f.category.value if f else None,
                f.severity.label if f else None,
                _t(path or (f.path if f else None)),
                _t(detail),
            )
            for kind, f, path, detail in rows
        ]
        if not values:
            return
        with self.tx() as c:
            c.executemany(
                "INSERT INTO events(at, kind, finding_id, category, severity, path, detail)"
                " VALUES(?, ?, ?, ?, ?, ?, ?)",
                values,
            )

    def query_events(
        self,
        *,
        category: str | None = None,
        id_glob: str | None = None,
        severity: str | None = None,
        since: str | None = None,
        limit: int = 200,
    ) -> list[EventRow]:
        sql = "SELECT seq, at, kind, finding_id, category, severity, path, detail FROM events WHERE 1 = 1"
        args: list[Any] = []
        for column, value in (("category", category), ("severity", severity)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)
        sql += " ORDER BY seq DESC"
        with self._lock:
            rows = self.conn.execute(sql, args).fetchall()
        out = [EventRow(int(r[0]), r[1], r[2], _s(r[3]), r[4], r[5], _s(r[6]), _s(r[7]) or "") for r in rows]
        if id_glob is not None:
            out = [e for e in out if e.finding_id and fnmatch.fnmatchcase(e.finding_id, id_glob)]
        return list(reversed(out[:limit]))

    # remediation --------------------------------------------------------------------------------
    def remediation(self, finding_id: str, command: str, returncode: int | None, output: str) -> int:
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO remediations(at, finding_id, command, returncode, output) VALUES(?, ?, ?, ?, ?)",
                (now_iso(), finding_id, command, returncode, output[-4000:]),
            )
            return int(cur.lastrowid or 0)

    def verified(self, seq: int, ok: bool) -> None:
        with self.tx() as c:
            c.execute("UPDATE remediations SET verified = ? WHERE seq = ?", (int(ok), seq))

    def remediations(self, finding_id: str | None = None, since: str = "") -> list[Remediation]:
        sql = "SELECT seq, at, finding_id, command, returncode, output, verified FROM remediations WHERE at >= ?"
        args: list[Any] = [since]
        if finding_id is not None:
            sql += " AND finding_id = ?"
            args.append(finding_id)
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [
            Remediation(int(r[0]), r[1], r[2], r[3], r[4], r[5] or "", None if r[6] is None else bool(r[6]))
            for r in rows
        ]


def id_of(row: Any) -> str:
    """The id of a row starting with it (stored as bytes when not UTF-8)."""
    return str(_s(row[0]))


def finding_of(row: Any) -> Finding:
    """A finding from a row starting (id, data, first_seen, last_seen, count)."""
    return Finding.from_json(json.loads(row[1])).with_(first_seen=row[2], last_seen=row[3], count=int(row[4]))


def _row(f: Finding) -> tuple[Any, ...]:
    data = json.dumps(f.to_json(), sort_keys=True)
    return (_t(f.id), f.category.value, f.severity.label, _t(f.actual), data, f.first_seen, f.last_seen, f.count)


def _t(text: str | None) -> str | bytes | None:
    """Text for SQLite, losslessly: a file name that is not UTF-8 (surrogate-escaped by
    os.fsdecode) is stored as its bytes, which SQLite keeps exactly; `_s` turns it back."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
    return text


def _s(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level="DEFERRED")
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        ok = conn.execute("PRAGMA quick_check").fetchone()
        if not ok or ok[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {ok[0] if ok else 'no answer'}")
        with conn:
            conn.executescript(SCHEMA)
            columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(findings)")}
            if "basis" not in columns:  # a database from before the digest was kept with each finding
                conn.execute("ALTER TABLE findings ADD COLUMN basis INTEGER")
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def stored_report(state_dir: Path, max_age: float) -> Report | None:
    """The daemon's last report if every category was captured within `max_age` seconds, else None."""
    if not (state_dir / DB_NAME).exists():
        return None
    try:
        store = Store.open(state_dir, repair=False)  # the report timer never moves the daemon's history
    except (OSError, sqlite3.Error, NixdriftError) as exc:
        log.warning("cannot read %s (scanning instead): %s", state_dir / DB_NAME, exc)
        return None
    try:
        text, captured = store.meta("report"), store.meta("captured_at")
    finally:
        store.close()
    if not text or not captured:
        return None
    report = Report.from_json(json.loads(text))
    times = json.loads(captured)
    if set(times) < {c.value for c in report.categories} or not times:
        return None
    if time.time() - min(float(t) for t in times.values()) > max_age:
        return None
    return report
