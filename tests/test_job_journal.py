"""The job journal: results by (identity, content hash) in SQLite, grouped commits, the
inputs an earlier run sent and never got back."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import pytest

from netcore.jobs.journal import FILE_NAME, JobJournal, JobJournalError


def h(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest()


def part(i: int) -> list[dict[str, object]]:
    return [{"fields": {"class": i}, "worker": "w1", "latency_ms": 1.5}]


async def test_results_survive_a_reopen_and_are_found_by_identity(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path)
    await journal.mark_sent("A", [h(1), h(2), h(3)])
    await journal.put_done("A", [(h(1), part(1)), (h(2), part(2))])
    journal.close()

    again = JobJournal(tmp_path)
    assert again.lookup("A", [h(1), h(2), h(3), h(1)]) == {h(1): part(1), h(2): part(2)}
    assert again.lookup("B", [h(1)]) == {}  # another model (or other options): not reused
    assert again.sent_before("A") == {h(3)}  # sent, never back: done again next time
    assert again.stored("A") == 2
    # The marks of inputs that came back are dropped: the set stays small.
    with sqlite3.connect(tmp_path / FILE_NAME) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sent").fetchone()[0] == 1
    again.close()


async def test_the_writes_of_one_loop_turn_share_one_commit(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path)
    commits = []
    write = journal._write

    def counting(ops: list[tuple[object, ...]]) -> list[None]:
        commits.append(len(ops))
        return write(ops)

    journal._writes.write = counting
    await asyncio.gather(*(journal.put_done("A", [(h(i), part(i))]) for i in range(300)))
    assert commits == [300]
    assert journal.stored("A") == 300
    journal.close()


async def test_a_journal_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).mkdir()
    with pytest.raises(JobJournalError, match="cannot open the job journal"):
        JobJournal(tmp_path)


async def test_jobs_are_recorded(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path)
    job = journal.start_job("A", "digits", "p2pai map digits x.csv -o y.jsonl", "y.jsonl")
    journal.finish_job(job, "done", {"ok": 3})
    with sqlite3.connect(tmp_path / FILE_NAME) as conn:
        row = conn.execute("SELECT model, state, summary FROM jobs").fetchone()
    assert row == ("digits", "done", '{"ok": 3}')
    journal.close()
