"""The task journal: what is committed when, and what a resume runs (real SQLite files)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netcore.tasks.journal import Journal, JournalError
from netcore.tasks.journaled import JournaledSubmitter


@dataclass
class Outcome:
    ok: bool = True
    worker: str | None = "w1"
    attempts: int = 1
    latency_s: float = 0.001
    label: int | None = 3
    confidence: float | None = 0.9
    error_code: str = ""
    error: str = ""
    task_id: str = ""


@dataclass
class FakeInner:
    """Records what it is asked to run; answers at once, or never for ids in ``hang``."""

    seen: list[tuple[str, Any, dict[str, Any]]] = field(default_factory=list)

    async def submit(self, model: str, inputs: Any, **options: Any) -> Outcome:
        self.seen.append((model, inputs, options))
        return Outcome(task_id=options["task_id"])


def sample(i: int) -> np.ndarray:
    return np.full((1, 64), i, dtype=np.float32)


async def test_each_task_is_pending_before_it_is_sent_and_done_after(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    states: list[str] = []

    class Peeking(FakeInner):
        async def submit(self, model: str, inputs: Any, **options: Any) -> Outcome:
            states.extend(r["state"] for r in journal.history(limit=10))
            return await super().submit(model, inputs, **options)

    sub = JournaledSubmitter(Peeking(), journal, "digits")
    outcome = await sub.submit("digits", sample(1))
    assert states == ["pending"]
    rows = journal.history()
    assert [r["state"] for r in rows] == ["done"]
    assert rows[0]["task_id"] == outcome.task_id
    assert rows[0]["label"] == 3 and rows[0]["worker"] == "w1"


async def test_resume_runs_only_the_pending_tasks_with_their_inputs(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    first = JournaledSubmitter(FakeInner(), journal, "digits")
    for i in range(3):
        await first.submit("digits", sample(i))
    # Two more were journaled, then the process died before their outcomes.
    lost = [journal.add(first.run_id, "digits", {"": sample(10 + i)}) for i in range(2)]
    journal.close()

    reopened = Journal(tmp_path)
    runs = reopened.runs(unfinished_only=True)
    assert [(r.run_id, r.pending, r.done) for r in runs] == [(first.run_id, 2, 3)]
    pending = reopened.pending(first.run_id)
    assert [p.task_id for p in pending] == lost
    inner = FakeInner()
    again = JournaledSubmitter(inner, reopened, "digits", run_id=first.run_id)
    for entry in pending:
        await again.resume(entry)
    again.close()
    sent = [(options["task_id"], float(inputs[0, 0])) for _, inputs, options in inner.seen]
    assert sent == [(lost[0], 10.0), (lost[1], 11.0)]
    assert reopened.runs(unfinished_only=True) == []
    assert sorted(r["state"] for r in reopened.history()) == ["done"] * 5


async def test_an_outcome_is_recorded_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    run = journal.start_run("digits")
    task_id = journal.add(run, "digits", {"input": sample(1)})
    assert journal.finish(task_id, Outcome()) is True
    assert journal.finish(task_id, Outcome(ok=False, error_code="timeout")) is False
    assert journal.history()[0]["state"] == "done"


async def test_failed_outcomes_keep_their_reason(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    run = journal.start_run("digits")
    task_id = journal.add(run, "digits", {"input": sample(1)})
    journal.finish(task_id, Outcome(ok=False, label=None, error_code="bad_input", error="shape"))
    row = journal.history(state="failed")[0]
    assert (row["error_code"], row["error"]) == ("bad_input", "shape")
    assert journal.history(state="done") == []


def test_a_run_owned_by_a_live_process_is_not_taken(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    run = journal.start_run("digits")
    journal.add(run, "digits", {"input": sample(1)})
    info = journal.runs(unfinished_only=True)[0]
    assert info.pid == os.getpid() and info.owner_alive


def test_an_unusable_journal_is_one_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("not a dir")
    with pytest.raises(JournalError, match="cannot open task journal"):
        Journal(target)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "journal.db").write_bytes(b"garbage" * 200)
    with pytest.raises(JournalError, match="journal"):
        Journal(tmp_path / "d")


# --- group commit ---------------------------------------------------------------------------


async def test_writes_of_one_loop_turn_share_one_commit() -> None:
    import asyncio

    from netcore.tasks.group_commit import GroupCommit

    batches: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        batches.append(items)
        return [i * 10 for i in items]

    commit = GroupCommit(write)
    results = await asyncio.gather(*(commit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert batches == [[0, 1, 2, 3, 4]]  # one transaction, in call order
    assert await commit(7) == 70 and batches[-1] == [7]


async def test_a_failed_commit_fails_every_writer_of_its_batch() -> None:
    import asyncio

    from netcore.tasks.group_commit import GroupCommit

    def write(items: list[int]) -> list[int]:
        raise JournalError("task journal: disk full")

    commit = GroupCommit(write)
    results = await asyncio.gather(commit(1), commit(2), return_exceptions=True)
    assert all(isinstance(r, JournalError) for r in results)


async def test_a_journaled_submit_commits_tasks_and_outcomes_in_groups(tmp_path: Path) -> None:
    import asyncio

    journal = Journal(tmp_path)
    commits = 0
    real = journal._write

    def counting() -> Any:
        nonlocal commits
        commits += 1
        return real()

    journal._write = counting  # type: ignore[method-assign]

    submitter = JournaledSubmitter(FakeInner(), journal, "digits")
    before = commits
    x = np.zeros((1, 64), np.float32)
    await asyncio.gather(*(submitter.submit("digits", x) for _ in range(20)))
    assert commits - before == 2  # 20 tasks journaled in one commit, 20 outcomes in another
    run = journal.runs()[0]
    assert (run.total, run.done) == (20, 20)
    journal.close()
