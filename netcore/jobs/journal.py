"""The job journal: every input's result by (job identity, content hash), in SQLite.

Its own file, ``jobs.db`` in the data dir (WAL, one writer), beside the task journal. An
input's content hash (sha256, a 32-byte key) is logged as ``sent`` before its tasks go out
(an append to a table without an index: cheap), and its result is stored as JSON when they
are back. The writes of one turn of the event loop share one commit
(:class:`netcore.tasks.group_commit.GroupCommit`), so journaling costs microseconds an input,
not a commit each.

Running the same job again reads the stored results instead of computing them. An input that
was logged as sent but has no result had its tasks out when the last run died: it is computed
again, and counted (the summary's ``recomputed``). A result is a list of parts (one, or a
long text's chunks), each ``{"fields": ..., "worker": ..., "latency_ms": ...}``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netcore.tasks.group_commit import GroupCommit

FILE_NAME = "jobs.db"
SCHEMA_VERSION = 1
LOOKUP_CHUNK = 500
"""Content hashes looked up in one SELECT (SQLite's limit on parameters is higher)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
    ident    INTEGER PRIMARY KEY,
    identity TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS results (
    ident   INTEGER NOT NULL,
    content BLOB NOT NULL,
    parts   TEXT NOT NULL,
    PRIMARY KEY (ident, content)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent (
    ident   INTEGER NOT NULL,
    content BLOB NOT NULL
);
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
            self.conn.execute("PRAGMA cache_size=-65536")  # up to 64 MiB, as the table grows
            self.conn.execute("PRAGMA wal_autocheckpoint=10000")
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
        self._idents: dict[str, int] = {}
        self._writes: GroupCommit[tuple[Any, ...], None] = GroupCommit(self._write)

    def close(self) -> None:
        self.conn.close()

    def _ident(self, identity: str) -> int:
        ident = self._idents.get(identity)
        if ident is None:
            row = self.conn.execute(
                "SELECT ident FROM identities WHERE identity = ?", (identity,)
            ).fetchone()
            if row is None:
                self._run("INSERT INTO identities (identity) VALUES (?)", (identity,))
                row = self.conn.execute(
                    "SELECT ident FROM identities WHERE identity = ?", (identity,)
                ).fetchone()
            ident = self._idents[identity] = int(row[0])
        return ident

    # --- reads -----------------------------------------------------------------------------

    def lookup(self, identity: str, contents: Sequence[bytes]) -> dict[bytes, Parts]:
        """The stored results of those of ``contents`` that have one."""
        ident = self._ident(identity)
        found: dict[bytes, Parts] = {}
        unique = list(dict.fromkeys(contents))
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT content, parts FROM results WHERE ident = ? AND content IN ({marks})",
                (ident, *chunk),
            ).fetchall()
            for content, parts in rows:
                found[bytes(content)] = json.loads(parts)
        return found

    def sent_before(self, identity: str) -> set[bytes]:
        """The inputs an earlier run sent but has no result for (its tasks were out when it
        died). The marks of inputs that have a result since are dropped first, so this set
        stays small: at most what was in flight at each death."""
        ident = self._ident(identity)
        self._run(
            "DELETE FROM sent WHERE ident = ? AND EXISTS (SELECT 1 FROM results r "
            "WHERE r.ident = sent.ident AND r.content = sent.content)",
            (ident,),
        )
        rows = self.conn.execute("SELECT content FROM sent WHERE ident = ?", (ident,))
        return {bytes(r[0]) for r in rows}

    def stored(self, identity: str) -> int:
        """How many results the journal holds for ``identity``."""
        row = self.conn.execute(
            "SELECT COUNT(*) FROM results r JOIN identities i ON i.ident = r.ident "
            "WHERE i.identity = ?",
            (identity,),
        ).fetchone()
        return int(row[0])

    # --- writes (grouped into one commit a loop turn) --------------------------------------

    async def mark_sent(self, identity: str, contents: Sequence[bytes]) -> None:
        await self._writes(("sent", self._ident(identity), list(contents)))

    async def put_done(self, identity: str, results: Sequence[tuple[bytes, Parts]]) -> None:
        dumps = json.dumps
        rows = [(c, dumps(parts, separators=(",", ":"))) for c, parts in results]
        await self._writes(("done", self._ident(identity), rows))

    def _write(self, ops: list[tuple[Any, ...]]) -> list[None]:
        sent = [(op[1], c) for op in ops if op[0] == "sent" for c in op[2]]
        done = [(op[1], c, parts) for op in ops if op[0] == "done" for c, parts in op[2]]
        try:
            with self.conn:
                self.conn.execute("BEGIN")
                if sent:
                    self.conn.executemany("INSERT INTO sent (ident, content) VALUES (?, ?)", sent)
                if done:
                    done.sort()  # neighbouring keys: fewer pages touched
                    self.conn.executemany(
                        "INSERT OR REPLACE INTO results (ident, content, parts) VALUES (?, ?, ?)",
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
