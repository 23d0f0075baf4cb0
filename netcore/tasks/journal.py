"""The requester's durable task journal: SQLite in WAL mode, in the data dir.

Every task a requester submits through :class:`JournaledSubmitter` is committed to the journal
*before* it is sent, and its outcome is committed *before* the caller is told. So a requester
killed at any point and restarted with ``--resume`` finishes exactly the tasks that have no
outcome yet, and the caller is told each outcome once: a task whose outcome was committed is
never run again, and one whose outcome was not committed was never reported. (A worker may
have run such a task before the crash; its result was lost with the requester and only the
re-run's outcome is reported.)

The journal is its own database file (``journal.db``) so that its writes never wait on other
stores' locks. The tasks (and the outcomes) of one turn of the event loop share a commit
(:class:`netcore.tasks.group_commit.GroupCommit`); :class:`netcore.tasks.journaled.JournaledSubmitter`
wraps a submitter with it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from netcore.tasks.journal_schema import SCHEMA, SCHEMA_VERSION, migrate
from netcore.wire import protocol

FILE_NAME = "journal.db"


class JournalError(Exception):
    """The journal cannot be opened or written; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class JournalTask:
    task_id: str
    run_id: str
    seq: int
    model: str
    sha256: str | None
    inputs: dict[str, np.ndarray]
    expected: int | None


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What a run will send: ``samples`` samples of ``source`` (a file, or '' for the bundled
    held-out digits), cycling, in ``tasks`` tasks of ``batch``."""

    source: str
    samples: int
    batch: int
    tasks: int


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    created: float
    host: str
    pid: int
    model: str
    total: int
    pending: int
    done: int
    failed: int

    @property
    def owner_alive(self) -> bool:
        """True when the process that started the run still runs (on this host)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class Journal:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a killed process (not a power cut),
            # without an fsync per task.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise JournalError(
                    f"journal {self.path} was written by a newer p2pai (schema {row[0]}); upgrade"
                )
            elif int(row[0]) < SCHEMA_VERSION:
                migrate(self.db, int(row[0]))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open task journal {self.path}: {exc}") from None
        except OSError as exc:
            raise JournalError(f"cannot open task journal {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise JournalError(f"task journal {self.path}: {exc}") from None

    # --- writing -------------------------------------------------------------------------

    def start_run(self, model: str, plan: RunPlan | None = None, labels: Sequence[str] = ()) -> str:
        """A new run (one ``submit``), owned by this process.

        With a ``plan`` the whole run is known before its first task is sent, so a resume
        can also send the tasks that were never journaled (see :func:`netcore.tasks.resume`).
        ``labels`` are the model's class names, kept to list results by name later.
        """
        run_id = uuid.uuid4().hex[:12]
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (run_id, created, host, pid, model, total, source, samples,"
                " batch, planned, labels) VALUES (?,?,?,?,?,0,?,?,?,?,?)",
                (
                    run_id,
                    time.time(),
                    socket.gethostname(),
                    os.getpid(),
                    model,
                    plan.source if plan else None,
                    plan.samples if plan else None,
                    plan.batch if plan else None,
                    plan.tasks if plan else None,
                    json.dumps(list(labels)) if labels else None,
                ),
            )
        return run_id

    def journaled(self, run_id: str) -> int:
        """Tasks of the run written to the journal so far."""
        row = self.db.execute("SELECT total FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return int(row[0]) if row else 0

    def plan_of(self, run_id: str) -> RunPlan | None:
        row = self.db.execute(
            "SELECT source, samples, batch, planned FROM runs WHERE run_id=?", (run_id,)
        ).fetchone()
        if row is None or row[1] is None:
            return None
        return RunPlan(row[0] or "", int(row[1]), int(row[2]), int(row[3]))

    def add(
        self,
        run_id: str,
        model: str,
        inputs: Mapping[str, np.ndarray],
        sha256: str | None = None,
        expected: int | None = None,
        task_id: str | None = None,
    ) -> str:
        """Commit a pending task before it is sent; returns its task id."""
        return self.add_many([NewTask(run_id, model, inputs, sha256, expected, task_id)])[0]

    def add_many(self, tasks: Sequence[NewTask]) -> list[str]:
        """Commit pending tasks in one transaction (in this order); returns their ids."""
        rows = [
            (
                t.task_id or uuid.uuid4().hex[:16],
                t,
                msgpack.packb(protocol.tensor_map(t.inputs), use_bin_type=True),
            )
            for t in tasks
        ]
        with self._write() as db:
            for task_id, t, blob in rows:
                db.execute("UPDATE runs SET total = total + 1 WHERE run_id=?", (t.run_id,))
                seq = db.execute("SELECT total FROM runs WHERE run_id=?", (t.run_id,)).fetchone()[0]
                db.execute(
                    "INSERT INTO tasks (task_id, run_id, seq, model, sha256, inputs, expected,"
                    " created, samples) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        task_id,
                        t.run_id,
                        seq,
                        t.model,
                        t.sha256,
                        blob,
                        t.expected,
                        time.time(),
                        _sample_count(t.inputs),
                    ),
                )
        return [task_id for task_id, _, _ in rows]

    def end_run(self, run_id: str) -> None:
        """Mark a run finished when none of its tasks is pending nor still to be sent."""
        with self._write() as db:
            db.execute(
                "UPDATE runs SET finished=? WHERE run_id=? AND finished IS NULL"
                " AND total >= COALESCE(planned, 0) AND NOT EXISTS"
                " (SELECT 1 FROM tasks WHERE run_id=? AND state='pending')",
                (time.time(), run_id, run_id),
            )

    def claim(self, run_id: str) -> None:
        """Mark this process as the run's owner (on resume)."""
        with self._write() as db:
            db.execute(
                "UPDATE runs SET pid=?, host=? WHERE run_id=?",
                (os.getpid(), socket.gethostname(), run_id),
            )

    def finish(self, task_id: str, outcome: Any) -> bool:
        """Commit a task's outcome; False if it already had one (then it must not be reported)."""
        return self.finish_many([(task_id, outcome)])[0]

    def finish_many(self, done: Sequence[tuple[str, Any]]) -> list[bool]:
        """:meth:`finish` for several tasks in one transaction."""
        first = []
        with self._write() as db:
            for task_id, outcome in done:
                cur = db.execute(
                    "UPDATE tasks SET state=?, finished=?, worker=?, attempts=?, latency_ms=?,"
                    " label=?, confidence=?, error_code=?, error=?, outputs=?, label_output=?"
                    " WHERE task_id=? AND state='pending'",
                    (
                        "done" if outcome.ok else "failed",
                        time.time(),
                        outcome.worker,
                        outcome.attempts,
                        round(outcome.latency_s * 1000, 3),
                        outcome.label,
                        outcome.confidence,
                        outcome.error_code or None,
                        outcome.error or None,
                        *_result_columns(outcome),
                        task_id,
                    ),
                )
                first.append(cur.rowcount == 1)
        return first

    # --- reading -------------------------------------------------------------------------

    def runs(self, unfinished_only: bool = False) -> list[RunInfo]:
        sql = (
            "SELECT r.run_id, r.created, r.host, r.pid, r.model, MAX(r.total, COALESCE(r.planned, 0)),"
            " COALESCE(SUM(t.state='pending'), 0) + MAX(COALESCE(r.planned, 0) - r.total, 0),"
            " COALESCE(SUM(t.state='done'), 0),"
            " COALESCE(SUM(t.state='failed'), 0)"
            " FROM runs r LEFT JOIN tasks t ON t.run_id = r.run_id"
            + (" WHERE r.finished IS NULL" if unfinished_only else "")
            + " GROUP BY r.run_id ORDER BY r.created"
        )
        return [RunInfo(*row) for row in self.db.execute(sql)]

    def pending(self, run_id: str) -> list[JournalTask]:
        rows = self.db.execute(
            "SELECT task_id, run_id, seq, model, sha256, inputs, expected FROM tasks"
            " WHERE run_id=? AND state='pending' ORDER BY seq",
            (run_id,),
        )
        found = []
        for task_id, run, seq, model, sha256, blob, expected in rows:
            wire = msgpack.unpackb(blob, raw=False)
            inputs = {name: np.array(protocol.decode_tensor(t, name)) for name, t in wire.items()}
            found.append(JournalTask(task_id, run, seq, model, sha256, inputs, expected))
        return found

    def history(
        self,
        state: str | None = None,
        model: str | None = None,
        run_id: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        clauses, args = [], []
        for column, value in (("state", state), ("model", model), ("run_id", run_id)):
            if value is not None:
                clauses.append(f"{column}=?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        cur = self.db.execute(
            "SELECT task_id, run_id, seq, model, state, created, finished, worker, attempts,"
            " latency_ms, label, confidence, expected, error_code, error, samples"
            f" FROM tasks{where} ORDER BY created DESC, seq DESC LIMIT ?",
            (*args, limit),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def labels_of(self, run_id: str) -> list[str]:
        """The class names the run's model gave, if it gave any."""
        row = self.db.execute("SELECT labels FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return [str(x) for x in json.loads(row[0])] if row and row[0] else []

    def results_of(self, task_id: str) -> TaskResults | None:
        """A finished task's outputs as journaled (None for tasks of journals before schema 2,
        pending or failed tasks)."""
        row = self.db.execute(
            "SELECT t.seq, t.samples, t.outputs, t.label_output, r.batch FROM tasks t"
            " JOIN runs r ON r.run_id = t.run_id WHERE t.task_id=?",
            (task_id,),
        ).fetchone()
        if row is None or row[2] is None:
            return None
        seq, samples, blob, label_output, batch = row
        wire = msgpack.unpackb(blob, raw=False)
        outputs = {name: np.array(protocol.decode_tensor(t, name)) for name, t in wire.items()}
        first = (seq - 1) * batch if batch else None
        return TaskResults(int(samples or 1), first, outputs, label_output)


@dataclass(frozen=True, slots=True)
class TaskResults:
    """What :meth:`Journal.results_of` reads back: a task's output tensors."""

    samples: int
    first: int | None
    """0-based position in its run of the task's first sample, when the run had a plan."""
    outputs: dict[str, np.ndarray]
    label_output: str | None


def _result_columns(outcome: Any) -> tuple[bytes | None, str | None]:
    """(outputs, label_output) of an outcome: its output tensors hold every sample's result."""
    outputs = getattr(outcome, "outputs", None)
    if not outcome.ok or not outputs:
        return None, None
    try:
        blob = msgpack.packb(protocol.tensor_map(outputs), use_bin_type=True)
    except ValueError:  # not a tensor the wire can carry (it came over the wire, so: never)
        return None, None
    return blob, getattr(outcome, "label_output", None)


def _sample_count(inputs: Mapping[str, np.ndarray]) -> int:
    """Samples in a task: the first dimension of its inputs (1 for a scalar input)."""
    first = next(iter(inputs.values()), None)
    shape = np.shape(first) if first is not None else ()
    return int(shape[0]) if shape else 1


BARE = ""
"""Journal key of an input given as a bare array (the model's single input)."""


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task to journal before it is sent (:meth:`Journal.add_many`)."""

    run_id: str
    model: str
    inputs: Mapping[str, np.ndarray]
    sha256: str | None = None
    expected: int | None = None
    task_id: str | None = None
