"""The job journal: every input's result by (job identity, content hash), in SQLite.

Its own file, ``jobs.db`` in the data dir (WAL, one writer), beside the task journal. An
input is marked ``sent`` before its tasks go out and ``done`` (with its result as JSON) when
they are back; writes of one turn of the event loop share one commit
(:class:`netcore.tasks.group_commit.GroupCommit`), so journaling costs a few microseconds an
input, not a commit each.

Running the same job again reads the ``done`` results instead of computing them; an input
found ``sent`` had its tasks out when the last run died and is computed again (what the
summary counts as ``recomputed``). A result is a list of parts (one, or a long text's chunks),
each ``{"fields": ..., "worker": ..., "latency_ms": ...}``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netcore.tasks.group_commit import GroupCommit

FILE_NAME = "jobs.db"
SCHEMA_VERSION = 1
LOOKUP_CHUNK = 500
"""Content hashes looked up in one SELECT (SQLite's limit on parameters is higher)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    identity TEXT NOT NULL,
    content  TEXT NOT NULL,
    state    TEXT NOT NULL CHECK (state IN ('sent', 'done')),
    parts    TEXT,
    updated  REAL NOT NULL,
    PRIMARY KEY (identity, content)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    job_id   TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    model    TEXT NOT NULL,
    command  TEXT NOT NULL,
    output   TEXT NOT NULL,
    started  REAL NOT NULL,
    finished REAL,
    state    TEXT NOT NULL,
    summary  TEXT
);
"""

Parts = list[dict[str, Any]]


class JobJournalError(Exception):
    """The journal cannot be opened or written; the message names the file and why."""


@dataclass(frozen=True, slots=True)
class Found:
    """What the journal holds for one input."""

    state: str
    parts: Parts | None


class JobJournal:
    """Results of jobs by (identity, content hash); see the module's doc."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FILE_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA busy_timeout=5000")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JobJournalError(
                    f"{self.path} was written by a newer p2pai (schema {version}, this one "
                    f"reads {SCHEMA_VERSION})"
                )
            self.conn.executescript(SCHEMA)
            self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise JobJournalError(f"cannot open the job journal {self.path}: {exc}") from None
        self._writes: GroupCommit[tuple[Any, ...], None] = GroupCommit(self._write)

    def close(self) -> None:
        self.conn.close()

    # --- reads -----------------------------------------------------------------------------

    def lookup(self, identity: str, contents: Sequence[str]) -> dict[str, Found]:
        """What the journal holds for each of ``contents`` (those it holds nothing for are
        left out)."""
        found: dict[str, Found] = {}
        unique = list(dict.fromkeys(contents))
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT content, state, parts FROM results WHERE identity = ? "
                f"AND content IN ({marks})",
                (identity, *chunk),
            ).fetchall()
            for content, state, parts in rows:
                found[content] = Found(state, json.loads(parts) if parts else None)
        return found

    def counts(self, identity: str) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT state, COUNT(*) FROM results WHERE identity = ? GROUP BY state", (identity,)
        ).fetchall()
        return {state: int(n) for state, n in rows}

    # --- writes (grouped into one commit a loop turn) --------------------------------------

    async def mark_sent(self, identity: str, content: str) -> None:
        await self._writes(("sent", identity, content))

    async def put_done(self, identity: str, content: str, parts: Parts) -> None:
        await self._writes(("done", identity, content, json.dumps(parts, separators=(",", ":"))))

    def _write(self, ops: list[tuple[Any, ...]]) -> list[None]:
        now = time.time()
        sent = [(op[1], op[2], now) for op in ops if op[0] == "sent"]
        done = [(op[1], op[2], op[3], now) for op in ops if op[0] == "done"]
        try:
            with self.conn:
                self.conn.execute("BEGIN")
                if sent:
                    self.conn.executemany(
                        "INSERT INTO results (identity, content, state, updated) "
                        "VALUES (?, ?, 'sent', ?) ON CONFLICT DO NOTHING",
                        sent,
                    )
                if done:
                    self.conn.executemany(
                        "INSERT INTO results (identity, content, state, parts, updated) "
                        "VALUES (?, ?, 'done', ?, ?) ON CONFLICT (identity, content) DO UPDATE "
                        "SET state = 'done', parts = excluded.parts, updated = excluded.updated",
                        done,
                    )
        except sqlite3.Error as exc:
            raise JobJournalError(f"cannot write the job journal {self.path}: {exc}") from None
        return [None] * len(ops)

    # --- the jobs themselves ---------------------------------------------------------------

    def start_job(self, identity: str, model: str, command: str, output: str) -> str:
        job_id = f"{int(time.time() * 1000):x}-{os.getpid():x}"
        self._run(
            "INSERT OR REPLACE INTO jobs (job_id, identity, model, command, output, started, "
            "state) VALUES (?, ?, ?, ?, ?, ?, 'running')",
            (job_id, identity, model, command, output, time.time()),
        )
        return job_id

    def finish_job(self, job_id: str, state: str, summary: dict[str, Any]) -> None:
        self._run(
            "UPDATE jobs SET finished = ?, state = ?, summary = ? WHERE job_id = ?",
            (time.time(), state, json.dumps(summary, default=str), job_id),
        )

    def _run(self, sql: str, args: tuple[Any, ...]) -> None:
        try:
            with self.conn:
                self.conn.execute("BEGIN")
                self.conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise JobJournalError(f"cannot write the job journal {self.path}: {exc}") from None
