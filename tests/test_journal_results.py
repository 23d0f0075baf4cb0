"""The journal keeps every sample's result (schema 2), and a schema-1 journal is migrated."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from netcore.tasks.journal import Journal
from netcore.tasks.journaled import JournaledSubmitter
from netcore.tasks.results import predictions
from netcore.wire import protocol

SCHEMA_1 = """
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
    planned  INTEGER
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
    error      TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_run_state ON tasks(run_id, state);
CREATE INDEX IF NOT EXISTS tasks_by_created ON tasks(created);
"""


@dataclass
class Outcome:
    task_id: str = ""
    ok: bool = True
    worker: str | None = "w1"
    attempts: int = 1
    latency_s: float = 0.001
    label: int | None = 2
    confidence: float | None = 0.7
    error_code: str = ""
    error: str = ""
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    label_output: str | None = "label"


def batch_outputs() -> dict[str, np.ndarray]:
    probs = np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1]], np.float32)
    return {"label": np.array([2, 0], np.int64), "probabilities": probs}


def test_every_sample_of_a_batched_task_is_journaled(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    run = journal.start_run("m", labels=["a", "b", "c"])
    task_id = journal.add(run, "m", {"x": np.zeros((2, 4), np.float32)})
    journal.finish(task_id, Outcome(outputs=batch_outputs()))
    (row,) = journal.history()
    assert row["samples"] == 2
    found = journal.results_of(task_id)
    assert found is not None and found.samples == 2 and found.label_output == "label"
    preds = predictions(found.outputs, found.label_output, found.samples)
    assert preds.classes is not None and preds.classes.tolist() == [2, 0]
    assert preds.confidence(1) == np.float32(0.8)
    assert journal.labels_of(run) == ["a", "b", "c"]


def test_a_schema_1_journal_is_migrated_and_keeps_its_tasks(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    db.executescript(SCHEMA_1)
    db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.execute(
        "INSERT INTO runs (run_id, created, host, pid, model, total) VALUES ('r1', 1, 'h', 1, 'm', 1)"
    )
    blob = msgpack.packb(protocol.tensor_map({"": np.zeros((1, 4), np.float32)}), use_bin_type=True)
    db.execute(
        "INSERT INTO tasks (task_id, run_id, seq, model, inputs, state, created, label)"
        " VALUES ('old', 'r1', 1, 'm', ?, 'done', 1, 7)",
        (blob,),
    )
    db.close()

    journal = Journal(tmp_path)
    (old,) = journal.history()
    assert (old["task_id"], old["label"], old["samples"]) == ("old", 7, None)
    assert journal.results_of("old") is None  # the old journal kept no outputs
    assert journal.labels_of("r1") == []
    run = journal.start_run("m", labels=["a", "b", "c"])  # the new columns work
    task_id = journal.add(run, "m", {"x": np.zeros((2, 4), np.float32)})
    journal.finish(task_id, Outcome(outputs=batch_outputs()))
    assert journal.results_of(task_id) is not None
    journal.close()
    schema = sqlite3.connect(tmp_path / "journal.db").execute("SELECT value FROM meta").fetchone()
    assert schema == ("2",)
    Journal(tmp_path).close()  # opening a migrated journal again changes nothing


async def test_an_outcome_committed_as_the_caller_is_cancelled_still_reaches_it(
    tmp_path: Path,
) -> None:
    """Ctrl-C between the commit of an outcome and its report: the outcome is never run
    again (it is done in the journal), so the caller must still get it."""
    journal = Journal(tmp_path)
    reached: list[Any] = []

    class Inner:
        async def submit(self, model: str, inputs: Any, **options: Any) -> Outcome:
            return Outcome(task_id=options["task_id"])

    sub = JournaledSubmitter(Inner(), journal, "m")

    async def caller() -> None:
        reached.append(await sub.submit("m", np.zeros((1, 4), np.float32)))

    task = asyncio.ensure_future(caller())
    while not sub._finish._pending:  # the outcome is in, its commit is scheduled
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    (row,) = journal.history()
    assert row["state"] == "done"
    assert [o.task_id for o in reached] == [row["task_id"]]
