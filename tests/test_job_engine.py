"""The job engine over an in-process Infer (real onnxruntime, no node): records in input
order, a bounded window, the journal's resume, identical inputs computed once, per-input
errors that let the job go on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from job_helpers import OrtInfer, digits_samples, tabular_spec

from netcore.jobs.content import job_identity
from netcore.jobs.engine import Job
from netcore.jobs.journal import JobJournal
from netcore.jobs.records import columns
from netcore.jobs.sources import Unreadable
from netcore.models.kinds import Item, kind_for
from netcore.models.kinds.tabular import TabularKind


class Collect:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def __call__(self, records: Sequence[dict[str, Any]]) -> None:
        self.records.extend(records)


def rows(x: np.ndarray) -> list[Item]:
    return [Item(str(i + 1), value=x[i]) for i in range(len(x))]


def unique_rows(n: int) -> np.ndarray:
    x, _ = digits_samples()
    rng = np.random.default_rng(1)
    reps = np.concatenate([x] * (n // len(x) + 1))[:n]
    return (reps + rng.uniform(0, 0.01, reps.shape)).astype(np.float32)


async def test_records_come_in_input_order_and_are_right(tmp_path: Path) -> None:
    spec = tabular_spec(tmp_path, "digits")
    kind = kind_for(spec)
    x, y = digits_samples()
    infer = OrtInfer(spec, jitter=0.005)  # calls finish out of order
    out = Collect()
    job = Job(kind, infer, out, window=64, block=8)
    stats = await job.run(rows(x))
    assert [r["input"] for r in out.records] == [str(i + 1) for i in range(len(x))]
    assert stats.ok == len(x) and stats.failed == 0 and stats.computed == len(x)
    right = np.mean([r["class"] == int(t) for r, t in zip(out.records, y, strict=True)])
    assert right >= 0.9
    assert set(out.records[0]) == {
        "input",
        "ok",
        "label",
        "class",
        "confidence",
        "worker",
        "latency_ms",
    }
    assert infer.calls >= len(x) // 8  # blocks of at most 8 inputs a call
    assert columns(kind) == (
        "input",
        "ok",
        "label",
        "class",
        "confidence",
        "worker",
        "latency_ms",
        "error",
    )


async def test_the_window_bounds_what_is_held(tmp_path: Path) -> None:
    spec = tabular_spec(tmp_path, "digits")
    x = unique_rows(3000)
    out = Collect()
    pulled = 0
    most_held = 0

    def source() -> Iterator[Item]:
        nonlocal pulled, most_held
        for item in rows(x):
            pulled += 1
            most_held = max(most_held, pulled - len(out.records))
            yield item

    job = Job(kind_for(spec), OrtInfer(spec, jitter=0.002), out, window=100, block=16)
    await job.run(source())
    assert len(out.records) == 3000
    assert most_held <= 100


async def test_a_stopped_job_resumes_from_the_journal(tmp_path: Path) -> None:
    spec = tabular_spec(tmp_path, "digits")
    kind = kind_for(spec)
    x = unique_rows(2000)
    identity = job_identity(kind)
    journal = JobJournal(tmp_path / "data")
    stop = asyncio.Event()
    first = Collect()

    def write_then_stop(records: Sequence[dict[str, Any]]) -> None:
        first(records)
        if len(first.records) >= 700:
            stop.set()

    infer = OrtInfer(spec, jitter=0.003)
    one = await Job(kind, infer, write_then_stop, journal=journal, identity=identity,
                    window=200, block=20).run(rows(x), stop)  # fmt: skip
    assert one.interrupted and 700 <= one.ok < 2000
    stored = journal.stored(identity)
    assert stored >= one.ok  # every input it wrote was journaled first
    lost = journal.sent_before(identity)  # sent, never back: cancelled by the stop
    assert len(lost) <= 200  # (none when the stop came between two blocks)

    second = Collect()
    again = OrtInfer(spec)
    two = await Job(kind, again, second, journal=journal, identity=identity, window=200,
                    block=20).run(rows(x))  # fmt: skip
    assert [r["input"] for r in second.records] == [str(i + 1) for i in range(2000)]
    assert two.from_journal == stored and two.computed == 2000 - stored
    assert again.rows == 2000 - stored  # nothing done was computed again
    # What the first run had sent and not got back is counted as work done again.
    assert two.recomputed == len(lost)
    assert first.records == second.records[: len(first.records)]

    third = await Job(kind, OrtInfer(spec), Collect(), journal=journal, identity=identity).run(
        rows(x)
    )
    assert third.from_journal == 2000 and third.computed == 0 and third.recomputed == 0
    fresh = await Job(kind, OrtInfer(spec), Collect(), journal=journal, identity=identity,
                      fresh=True).run(rows(x))  # fmt: skip
    assert fresh.computed == 2000 and fresh.from_journal == 0
    journal.close()


async def test_identical_inputs_are_computed_once(tmp_path: Path) -> None:
    spec = tabular_spec(tmp_path, "digits")
    x, _ = digits_samples()
    items = [Item(f"r{i}", value=x[i % 10]) for i in range(100)]  # ten distinct rows
    infer = OrtInfer(spec, jitter=0.002)
    out = Collect()
    stats = await Job(kind_for(spec), infer, out, block=4,
                      journal=JobJournal(tmp_path / "d"), identity="I").run(items)  # fmt: skip
    assert infer.rows < 100 and stats.computed + stats.duplicates + stats.from_journal == 100
    by_row = {r["input"]: r["class"] for r in out.records}
    assert all(by_row[f"r{i}"] == by_row[f"r{i % 10}"] for i in range(100))


async def test_bad_inputs_and_failed_tasks_are_their_records_and_the_job_goes_on(
    tmp_path: Path,
) -> None:
    spec = tabular_spec(tmp_path, "digits")
    x = unique_rows(40)
    items: list[Item] = rows(x)
    items[3] = Unreadable("4", error="4: column 'x' is empty")
    items[5] = Item("6", value=[1.0, 2.0])
    infer = OrtInfer(spec)
    infer.fail_rows = {2}  # the second call fails, as a task that timed out everywhere
    out = Collect()
    stats = await Job(kind_for(spec), infer, out, block=10).run(items)
    assert [r["input"] for r in out.records] == [str(i + 1) for i in range(40)]
    failed = {r["input"]: r["error"] for r in out.records if not r["ok"]}
    assert failed["4"] == "4: column 'x' is empty"
    assert failed["6"].startswith("6: a row of 2 numbers")
    timed_out = [k for k, e in failed.items() if e.startswith("timeout:")]
    assert len(timed_out) == 10  # one call's inputs
    assert stats.failed == 12 and stats.ok == 28
    assert stats.failures == {"read": 2, "run": 10}
    assert stats.first_errors[0] == "input 4: column 'x' is empty"


class TwoParts(TabularKind):
    """A kind that cuts each input in two (as a long text is cut into chunks)."""

    def parts(self, prepared: Any) -> list[Any]:
        return [prepared, prepared[:, ::-1].copy()]


async def test_a_kind_with_parts_gives_a_record_a_chunk(tmp_path: Path) -> None:
    spec = tabular_spec(tmp_path, "digits")
    kind = TwoParts(spec, {})
    x, _ = digits_samples()
    out = Collect()
    stats = await Job(kind, OrtInfer(spec), out).run(rows(x[:5]))
    assert [(r["input"], r["chunk"]) for r in out.records] == [
        (str(i), c) for i in range(1, 6) for c in (0, 1)
    ]
    assert stats.records == 10 and stats.ok == 5
    assert "chunk" in columns(kind)


async def test_an_output_that_cannot_be_written_stops_the_job(tmp_path: Path) -> None:
    spec = tabular_spec(tmp_path, "digits")

    def full(records: Sequence[dict[str, Any]]) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await Job(kind_for(spec), OrtInfer(spec), full).run(rows(unique_rows(50)))
