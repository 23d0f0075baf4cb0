"""The node's SQLite store: one file, ``<base data dir>/p2pai.db``, in WAL mode.

Several processes of one user share it (the node, ``p2pai submit``, the console), so every
write is a short transaction and counters are *added* (``x = x + ?``), never overwritten.

Schema versions are kept per component in ``schema_version``; a component owns its tables
and its list of migrations (:meth:`Store.migrate`). To add a table (a task journal, say),
write ``JOURNAL_MIGRATIONS = [["CREATE TABLE ...", ...]]`` and call
``store.migrate("journal", JOURNAL_MIGRATIONS)`` after :meth:`Store.open`: each migration
runs once, in order, inside one transaction with its version bump.

Components here: ``reputation`` (table ``peer_reputation``, one row per peer key).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_FILE = "p2pai.db"
BUSY_TIMEOUT_MS = 500
"""How long a write waits for another process's transaction; past it, it is retried later."""

REPUTATION_FIELDS: tuple[str, ...] = (
    "tasks_ok",
    "failures",
    "timeouts",
    "corrupt",
    "votes_won",
    "votes_lost",
    "spot_passed",
    "spot_failed",
)
"""The integer counters of a peer's reputation, in column order."""

REPUTATION_MIGRATIONS: list[list[str]] = [
    [
        """
        CREATE TABLE peer_reputation (
            key TEXT PRIMARY KEY,           -- Z85 public key: the peer's identity
            peer_id TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',  -- last display name seen
            tasks_ok INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            timeouts INTEGER NOT NULL DEFAULT 0,
            corrupt INTEGER NOT NULL DEFAULT 0,
            votes_won INTEGER NOT NULL DEFAULT 0,
            votes_lost INTEGER NOT NULL DEFAULT 0,
            spot_passed INTEGER NOT NULL DEFAULT 0,
            spot_failed INTEGER NOT NULL DEFAULT 0,
            uptime_s REAL NOT NULL DEFAULT 0,
            first_seen REAL NOT NULL,       -- unix time
            last_seen REAL NOT NULL,
            quarantined_at REAL,            -- unix time, NULL when not quarantined
            quarantine_reason TEXT NOT NULL DEFAULT ''
        )
        """,
        "CREATE INDEX peer_reputation_peer_id ON peer_reputation (peer_id)",
    ],
]


class StoreError(Exception):
    """The store cannot be opened or used; the message says why and what to do."""


@dataclass(slots=True)
class ReputationRow:
    key: str
    peer_id: str
    name: str
    counts: dict[str, int]
    uptime_s: float
    first_seen: float
    last_seen: float
    quarantined_at: float | None
    quarantine_reason: str


@dataclass(slots=True)
class ReputationDelta:
    """What to add to one peer's row."""

    peer_id: str
    name: str
    counts: dict[str, int]
    uptime_s: float = 0.0
    seen_at: float = 0.0


class Store:
    """A thin wrapper over one ``sqlite3`` connection (autocommit; explicit transactions)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating it, mode 0600) and migrate; raise :class:`StoreError`."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                os.close(fd)
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise StoreError(f"cannot open the store {path}: {why} (check --data-dir)") from None
        store = cls(path, conn)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"journal mode is {mode}, not WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL, updated REAL NOT NULL)"
            )
            store.migrate("reputation", REPUTATION_MIGRATIONS)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"the store {path} cannot be used ({exc}); move it away (reputation then "
                "starts afresh) or fix its permissions"
            ) from None
        return store

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- schema ----------------------------------------------------------------------------

    def version(self, component: str) -> int:
        row = self.conn.execute(
            "SELECT version FROM schema_version WHERE component = ?", (component,)
        ).fetchone()
        return int(row[0]) if row else 0

    def migrate(self, component: str, migrations: Sequence[Sequence[str]]) -> int:
        """Run the migrations of ``component`` not yet applied; returns its version.

        A store written by a newer p2pai (a version past ``len(migrations)``) is refused.
        """
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT version FROM schema_version WHERE component = ?", (component,)
            ).fetchone()
            current = int(row[0]) if row else 0
            if current > len(migrations):
                raise sqlite3.DatabaseError(
                    f"its {component!r} tables are version {current}, newer than this p2pai "
                    f"knows ({len(migrations)}): upgrade p2pai"
                )
            for statements in migrations[current:]:
                for statement in statements:
                    conn.execute(statement)
            if current < len(migrations):
                conn.execute(
                    "INSERT INTO schema_version (component, version, updated) VALUES (?, ?, ?)"
                    " ON CONFLICT (component) DO UPDATE SET version = excluded.version,"
                    " updated = excluded.updated",
                    (component, len(migrations), time.time()),
                )
        return len(migrations)

    # --- reputation ------------------------------------------------------------------------

    def load_reputation(self) -> list[ReputationRow]:
        cols = ", ".join(REPUTATION_FIELDS)
        rows = self.conn.execute(
            f"SELECT key, peer_id, name, {cols}, uptime_s, first_seen, last_seen,"
            " quarantined_at, quarantine_reason FROM peer_reputation"
        ).fetchall()
        out = []
        n = len(REPUTATION_FIELDS)
        for row in rows:
            counts = dict(zip(REPUTATION_FIELDS, (int(v) for v in row[3 : 3 + n]), strict=True))
            out.append(
                ReputationRow(
                    key=row[0],
                    peer_id=row[1],
                    name=row[2],
                    counts=counts,
                    uptime_s=float(row[3 + n]),
                    first_seen=float(row[4 + n]),
                    last_seen=float(row[5 + n]),
                    quarantined_at=None if row[6 + n] is None else float(row[6 + n]),
                    quarantine_reason=row[7 + n] or "",
                )
            )
        return out

    def add_reputation(self, deltas: Mapping[str, ReputationDelta]) -> None:
        """Add counters to each peer's row (creating it), in one transaction."""
        if not deltas:
            return
        cols = ", ".join(REPUTATION_FIELDS)
        marks = ", ".join("?" for _ in REPUTATION_FIELDS)
        adds = ", ".join(f"{c} = {c} + excluded.{c}" for c in REPUTATION_FIELDS)
        sql = (
            f"INSERT INTO peer_reputation (key, peer_id, name, {cols}, uptime_s, first_seen,"
            f" last_seen) VALUES (?, ?, ?, {marks}, ?, ?, ?)"
            f" ON CONFLICT (key) DO UPDATE SET {adds}, uptime_s = uptime_s + excluded.uptime_s,"
            " name = CASE WHEN excluded.name != '' THEN excluded.name ELSE name END,"
            " last_seen = MAX(last_seen, excluded.last_seen)"
        )
        params: list[tuple[Any, ...]] = []
        for key, delta in deltas.items():
            seen = delta.seen_at or time.time()
            params.append(
                (
                    key,
                    delta.peer_id,
                    delta.name,
                    *(int(delta.counts.get(c, 0)) for c in REPUTATION_FIELDS),
                    float(delta.uptime_s),
                    seen,
                    seen,
                )
            )
        with self.transaction() as conn:
            conn.executemany(sql, params)

    def set_quarantine(self, key: str, at: float | None, reason: str) -> None:
        """Record (or with ``at=None`` clear) a peer's quarantine."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE peer_reputation SET quarantined_at = ?, quarantine_reason = ?"
                " WHERE key = ?",
                (at, reason if at is not None else "", key),
            )

    def reset_reputation(self, keys: Sequence[str] | None = None) -> int:
        """Forget the reputation of ``keys`` (every peer for ``None``); returns rows removed."""
        with self.transaction() as conn:
            if keys is None:
                return conn.execute("DELETE FROM peer_reputation").rowcount
            removed = 0
            for key in keys:
                removed += conn.execute(
                    "DELETE FROM peer_reputation WHERE key = ?", (key,)
                ).rowcount
            return removed


def db_path(base_dir: Path) -> Path:
    return Path(base_dir) / DB_FILE
