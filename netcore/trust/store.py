"""The node's SQLite store: one file, ``<base data dir>/p2pai.db``, in WAL mode.

Several processes of one user share it (the node, ``p2pai submit``, the console), so every
write is a short transaction and counters are *added* (``x = x + ?``), never overwritten.

Schema versions are kept per component in ``schema_version``; a component owns its tables
and its list of migrations (:meth:`Store.migrate`). To add a table (a task journal, say),
write ``JOURNAL_MIGRATIONS = [["CREATE TABLE ...", ...]]`` and call
``store.migrate("journal", JOURNAL_MIGRATIONS)`` after :meth:`Store.open`: each migration
runs once, in order, inside one transaction with its version bump.

Components here: ``reputation`` (table ``peer_reputation``, one row per peer key). Its
counters come twice: the lifetime totals (``tasks_ok``...: what ``reputation show`` lists)
and the evidence the score is computed from (``w_tasks_ok``...: the same observations,
each weighed by its age with a half-life, as of ``decayed_at``; see
:mod:`netcore.trust.reputation`). A quarantine is a row's state (``quarantined_at``,
``quarantined_until``, its reason, the ``offences`` so far), set and ended by conditional
updates, so that two processes sharing the store never count one offence twice.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netcore.trust.scoring import FIELDS

DB_FILE = "p2pai.db"
BUSY_TIMEOUT_MS = 500
"""How long a write waits for another process's transaction; past it, it is retried later."""

REPUTATION_FIELDS: tuple[str, ...] = FIELDS
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
    [
        # Quarantines that end, evidence that decays (issue 16). An old quarantine, which had
        # no end, ends 10 minutes (the default first cool-down) after it began.
        "ALTER TABLE peer_reputation ADD COLUMN offences INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE peer_reputation ADD COLUMN quarantined_until REAL",
        "ALTER TABLE peer_reputation ADD COLUMN probation_from INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE peer_reputation ADD COLUMN decayed_at REAL NOT NULL DEFAULT 0",
        *(
            f"ALTER TABLE peer_reputation ADD COLUMN w_{c} REAL NOT NULL DEFAULT 0"
            for c in (*REPUTATION_FIELDS, "uptime_s")
        ),
        "UPDATE peer_reputation SET decayed_at = last_seen, "
        + ", ".join(f"w_{c} = {c}" for c in (*REPUTATION_FIELDS, "uptime_s")),
        "UPDATE peer_reputation SET offences = 1, quarantined_until = quarantined_at + 600"
        " WHERE quarantined_at IS NOT NULL",
    ],
]
WEIGHTED: tuple[str, ...] = (*REPUTATION_FIELDS, "uptime_s")
"""The columns that have a decaying twin ``w_<name>``."""


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
    offences: int = 0
    quarantined_until: float | None = None
    probation_from: int = 0
    """``spot_passed`` when its last probation began (0: its first)."""
    weights: dict[str, float] | None = None
    """The decaying evidence (``uptime_s`` included), as of ``decayed_at``."""
    decayed_at: float = 0.0


@dataclass(slots=True)
class ReputationDelta:
    """What to add to one peer's row: to its totals (``counts``, ``uptime_s``) and to its
    evidence (``weights``, which may be negative: votes given back)."""

    peer_id: str
    name: str
    counts: dict[str, int]
    uptime_s: float = 0.0
    seen_at: float = 0.0
    weights: dict[str, float] | None = None
    """None: the same as ``counts`` and ``uptime_s``."""


def decay(since: float | None, now: float, half_life: float) -> float:
    """What evidence from ``since`` weighs at ``now`` (1 with no half-life)."""
    if since is None or half_life <= 0 or half_life == math.inf:
        return 1.0
    return float(0.5 ** (max(0.0, now - since) / half_life))


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
            conn.create_function("p2pai_decay", 3, decay, deterministic=True)
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
        wcols = ", ".join(f"w_{c}" for c in WEIGHTED)
        rows = self.conn.execute(
            f"SELECT key, peer_id, name, {cols}, uptime_s, first_seen, last_seen,"
            " quarantined_at, quarantine_reason, offences, quarantined_until, probation_from,"
            f" decayed_at, {wcols} FROM peer_reputation"
        ).fetchall()
        out = []
        n = len(REPUTATION_FIELDS)
        for row in rows:
            counts = dict(zip(REPUTATION_FIELDS, (int(v) for v in row[3 : 3 + n]), strict=True))
            rest = row[3 + n :]
            weights = dict(zip(WEIGHTED, (float(v) for v in rest[9:]), strict=True))
            out.append(
                ReputationRow(
                    key=row[0],
                    peer_id=row[1],
                    name=row[2],
                    counts=counts,
                    uptime_s=float(rest[0]),
                    first_seen=float(rest[1]),
                    last_seen=float(rest[2]),
                    quarantined_at=None if rest[3] is None else float(rest[3]),
                    quarantine_reason=rest[4] or "",
                    offences=int(rest[5]),
                    quarantined_until=None if rest[6] is None else float(rest[6]),
                    probation_from=int(rest[7]),
                    decayed_at=float(rest[8]),
                    weights=weights,
                )
            )
        return out

    def add_reputation(
        self, deltas: Mapping[str, ReputationDelta], half_life: float = math.inf
    ) -> None:
        """Add to each peer's row (creating it), in one transaction: its evidence decays
        with ``half_life`` seconds up to the delta's time before the delta is added."""
        if not deltas:
            return
        cols = ", ".join(REPUTATION_FIELDS)
        wcols = ", ".join(f"w_{c}" for c in WEIGHTED)
        marks = ", ".join("?" for _ in REPUTATION_FIELDS)
        wmarks = ", ".join("?" for _ in WEIGHTED)
        adds = ", ".join(f"{c} = {c} + excluded.{c}" for c in REPUTATION_FIELDS)
        decays = ", ".join(
            f"w_{c} = MAX(0, w_{c} * p2pai_decay(decayed_at, excluded.decayed_at, ?)"
            f" + excluded.w_{c})"
            for c in WEIGHTED
        )
        sql = (
            f"INSERT INTO peer_reputation (key, peer_id, name, {cols}, uptime_s, first_seen,"
            f" last_seen, decayed_at, {wcols}) VALUES (?, ?, ?, {marks}, ?, ?, ?, ?, {wmarks})"
            f" ON CONFLICT (key) DO UPDATE SET {adds}, uptime_s = uptime_s + excluded.uptime_s,"
            f" {decays}, decayed_at = MAX(decayed_at, excluded.decayed_at),"
            " name = CASE WHEN excluded.name != '' THEN excluded.name ELSE name END,"
            " last_seen = MAX(last_seen, excluded.last_seen)"
        )
        half = half_life if half_life > 0 and half_life != math.inf else 0.0
        params: list[tuple[Any, ...]] = []
        for key, delta in deltas.items():
            seen = delta.seen_at or time.time()
            counts = [int(delta.counts.get(c, 0)) for c in REPUTATION_FIELDS]
            if delta.weights is None:
                weights = [*map(float, counts), float(delta.uptime_s)]
            else:
                weights = [float(delta.weights.get(c, 0.0)) for c in WEIGHTED]
            params.append(
                (
                    key, delta.peer_id, delta.name, *counts, float(delta.uptime_s), seen, seen,
                    seen, *weights, *([half] * len(WEIGHTED)),
                )
            )  # fmt: skip
        with self.transaction() as conn:
            conn.executemany(sql, params)

    def set_quarantine(
        self,
        key: str,
        at: float | None,
        reason: str,
        until: float | None = None,
        offences: int | None = None,
    ) -> bool:
        """Begin a quarantine (``at`` set) unless one is running; with ``at=None`` clear any
        (``reputation reset``-like). False when another process's quarantine runs already."""
        with self.transaction() as conn:
            if at is None:
                return (
                    conn.execute(
                        "UPDATE peer_reputation SET quarantined_at = NULL, quarantine_reason = '',"
                        " quarantined_until = NULL WHERE key = ?",
                        (key,),
                    ).rowcount
                    > 0
                )
            return (
                conn.execute(
                    "UPDATE peer_reputation SET quarantined_at = ?, quarantine_reason = ?,"
                    " quarantined_until = ?, offences = COALESCE(?, offences + 1)"
                    " WHERE key = ? AND (quarantined_until IS NULL OR quarantined_until <= ?)",
                    (at, reason, until, offences, key, at),
                ).rowcount
                > 0
            )

    def end_quarantine(
        self, key: str, until: float, probation_from: int, clear: Sequence[str], pardon: bool
    ) -> bool:
        """End the quarantine that was to last ``until`` (a no-op if it is not that one any
        more): its evidence ``clear`` is wiped (the sentence is served) and probation starts
        again from ``probation_from``; a ``pardon`` (the votes it lost are given back) also
        takes back the offence."""
        wipe = "".join(f", w_{c} = 0" for c in clear if c in WEIGHTED)
        back = ", offences = MAX(0, offences - 1)" if pardon else ""
        with self.transaction() as conn:
            return (
                conn.execute(
                    "UPDATE peer_reputation SET quarantined_at = NULL, quarantine_reason = '',"
                    f" quarantined_until = NULL, probation_from = ?{wipe}{back}"
                    " WHERE key = ? AND (quarantined_until = ? OR quarantined_until IS NULL)",
                    (probation_from, key, until),
                ).rowcount
                > 0
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
