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
from netcore.tasks.journal import Journal, JournaledSubmitter, JournalError, JournalTask, RunInfo
from netcore.tasks.tally import Tally


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """A task of the run's plan that was never journaled (the requester died first)."""

    seq: int
    inputs: np.ndarray
    expected: int | None


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
    on_outcome: Callable[[int, Any, int | None], None] | None = None,
) -> dict[str, Any]:
    """Run every pending task of ``runs`` under its journaled id; summarise like ``submit``."""
    tally = Tally()
    work: list[tuple[JournaledSubmitter, JournalTask | PlannedTask]] = []
    for run in runs:
        journal.claim(run.run_id)
        journaled = JournaledSubmitter(submitter, journal, run.model, run_id=run.run_id)
        work.extend((journaled, entry) for entry in journal.pending(run.run_id))
        work.extend((journaled, entry) for entry in unsent_tasks(journal, run))
    queue = list(reversed(work))

    async def lane() -> None:
        while queue:
            journaled, entry = queue.pop()
            if isinstance(entry, PlannedTask):
                outcome = await journaled.submit_at(journaled.model, entry.inputs, entry.expected)
            else:
                outcome = await journaled.resume(entry)
            tally.add(outcome, entry.expected)
            if on_outcome is not None:
                on_outcome(entry.seq, outcome, entry.expected)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(min(concurrency, len(work)) or 1)))
    elapsed = time.perf_counter() - started
    for run in runs:
        journal.end_run(run.run_id)
    summary = tally.summary(len(work), elapsed)
    summary["resumed_runs"] = [r.run_id for r in runs]
    return summary
