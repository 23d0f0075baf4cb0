"""The task journal's SQLite schema, and the migration of journals older p2pai versions wrote.

Schema 2 (this version) keeps each task's whole result: ``samples`` (how many samples the task
carried), ``outputs`` (its output tensors, msgpack as on the wire) and ``label_output``, so
that every sample of a batched task can be listed again (``p2pai tasks --samples``); and
each run's class names (``runs.labels``, JSON). A schema-1 journal gains these columns when
it is opened (its old tasks keep only their first sample's label).
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id   TEXT PRIMARY KEY,
    created  REAL NOT NULL,
    host     TEXT NOT NULL,
    pid      INTEGER NOT NULL,
    model    TEXT NOT NULL,
    total    INTEGER NOT NULL,
    finished REAL,
    source   TEXT,
    samples  INTEGER,
    batch    INTEGER,
    planned  INTEGER,
    labels   TEXT
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id    TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL REFERENCES runs(run_id),
    seq        INTEGER NOT NULL,
    model      TEXT NOT NULL,
    sha256     TEXT,
    inputs     BLOB NOT NULL,
    expected   INTEGER,
    state      TEXT NOT NULL DEFAULT 'pending',
    created    REAL NOT NULL,
    finished   REAL,
    worker     TEXT,
    attempts   INTEGER,
    latency_ms REAL,
    label      INTEGER,
    confidence REAL,
    error_code TEXT,
    error      TEXT,
    samples    INTEGER,
    outputs    BLOB,
    label_output TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_run_state ON tasks(run_id, state);
CREATE INDEX IF NOT EXISTS tasks_by_created ON tasks(created);
"""

ADDED = {
    2: [
        ("runs", "labels", "TEXT"),
        ("tasks", "samples", "INTEGER"),
        ("tasks", "outputs", "BLOB"),
        ("tasks", "label_output", "TEXT"),
    ],
}
"""Columns each schema version added, to an older journal's tables."""


def migrate(db: sqlite3.Connection, found: int) -> None:
    """Bring a journal of schema ``found`` to :data:`SCHEMA_VERSION`, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for table, column, kind in ADDED.get(version, []):
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
