"""``p2pai submit --resume``: finish the tasks of interrupted runs from the journal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netcore.models.registry import ModelError, load_samples
from netcore.tasks.batch import TaskReport
from netcore.tasks.journal import Journal, JournalError, JournalTask, RunInfo
from netcore.tasks.journaled import JournaledSubmitter
from netcore.tasks.ordered import run_in_order
from netcore.tasks.tally import Tally


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """A task of the run's plan that was never journaled (the requester died first)."""

    seq: int
    inputs: np.ndarray
    expected: int | None


@dataclass(frozen=True, slots=True)
class _Source:
    """What a run's plan says of its samples: where each task's samples came from."""

    batch: int
    length: int | None
    """Rows in the sample source (None: it cannot be read again)."""
    labels: np.ndarray | None

    def place(self, seq: int, count: int) -> tuple[int, list[int] | None, list[int | None] | None]:
        first = (seq - 1) * self.batch
        if self.length is None:
            return first, None, None
        rows = [(first + i) % self.length for i in range(count)]
        labels = self.labels
        return first, rows, [int(labels[r]) for r in rows] if labels is not None else None


def _source_of(journal: Journal, run: RunInfo) -> _Source | None:
    plan = journal.plan_of(run.run_id)
    if plan is None:
        return None
    try:
        samples, labels = load_samples(Path(plan.source) if plan.source else None)
    except ModelError:
        return _Source(plan.batch, None, None)
    return _Source(plan.batch, len(samples), labels)


def unsent_tasks(journal: Journal, run: RunInfo) -> list[PlannedTask]:
    """Rebuild the planned tasks past the last journaled one, from the run's sample source."""
    plan = journal.plan_of(run.run_id)
    if plan is None:
        return []
    first_unsent = journal.journaled(run.run_id)
    if first_unsent >= plan.tasks:
        return []
    try:
        samples, labels = load_samples(Path(plan.source) if plan.source else None)
    except ModelError as exc:
        raise JournalError(
            f"run {run.run_id}: {plan.tasks - first_unsent} tasks were never sent and their "
            f"samples cannot be read again: {exc}"
        ) from None
    found = []
    for position in range(first_unsent, plan.tasks):
        first = position * plan.batch
        count = min(plan.batch, plan.samples - first)
        rows = (first + np.arange(count)) % len(samples)
        expected = int(labels[rows[0]]) if labels is not None and plan.batch == 1 else None
        found.append(PlannedTask(position + 1, np.ascontiguousarray(samples[rows]), expected))
    return found


def interrupted_runs(journal: Journal) -> list[RunInfo]:
    """Runs with pending tasks whose owning process is gone."""
    return [r for r in journal.runs(unfinished_only=True) if r.pending and not r.owner_alive]


async def resume_runs(
    submitter: Any,
    journal: Journal,
    runs: list[RunInfo],
    concurrency: int,
    on_report: Callable[[TaskReport], None] | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Run every pending task of ``runs`` under its journaled id; summarise like ``submit``.

    Tasks keep the numbers their run gave them (the journal's ``seq``) and are reported in
    that order, run by run.
    """
    tally = Tally()
    work: list[tuple[JournaledSubmitter, JournalTask | PlannedTask, _Source | None]] = []
    batch = 1
    for run in runs:
        journal.claim(run.run_id)
        journaled = JournaledSubmitter(submitter, journal, run.model, run_id=run.run_id)
        source = _source_of(journal, run)
        batch = max(batch, source.batch if source else 1)
        entries: list[JournalTask | PlannedTask] = [*journal.pending(run.run_id)]
        entries.extend(unsent_tasks(journal, run))
        work.extend((journaled, entry, source) for entry in entries)

    async def run_one(index: int) -> Any:
        journaled, entry, _ = work[index]
        if isinstance(entry, PlannedTask):
            return await journaled.submit_at(journaled.model, entry.inputs, entry.expected)
        return await journaled.resume(entry)

    def emit(index: int, outcome: Any) -> None:
        _, entry, source = work[index]
        count = _count(entry)
        if source is not None:
            first, rows, expected = source.place(entry.seq, count)
        else:
            first, rows, expected = entry.seq - 1, None, None
        if count == 1 and entry.expected is not None:
            expected = [entry.expected]
        report = TaskReport(entry.seq, outcome, first, count, rows, expected)
        tally.add(report)
        if on_report is not None:
            on_report(report)

    started = time.perf_counter()
    progress = await run_in_order(
        len(work), concurrency, run_one, emit, window=None if on_report else 0, stop=stop
    )
    elapsed = time.perf_counter() - started
    for run in runs:
        journal.end_run(run.run_id)
    samples = sum(_count(entry) for _, entry, _ in work)
    summary = tally.summary(len(work), samples, batch, elapsed)
    summary["resumed_runs"] = [r.run_id for r in runs]
    if progress.interrupted:
        summary["interrupted"] = True
    return summary


def _count(entry: JournalTask | PlannedTask) -> int:
    """Samples in a task: its input's first dimension."""
    first = (
        entry.inputs if isinstance(entry, PlannedTask) else next(iter(entry.inputs.values()), None)
    )
    return int(np.shape(first)[0]) if first is not None and np.ndim(first) else 1
