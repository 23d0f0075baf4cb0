"""One planned job run on a node: verification, batching into tasks, the engine and the
journal's job row. ``p2pai map`` (netcore.cli.map) and the console's Jobs pane (tui.jobs) both
run jobs through :func:`run_job`; finding workers, printing and committing the output are
theirs.

The node is duck-typed (``submit``, ``registry``, ``peers``, ``transport``): this layer sits
below ``netcore.node`` and never imports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netcore.jobs.batcher import Batcher, BatchStats
from netcore.jobs.content import job_identity
from netcore.jobs.engine import Job, JobProgress, JobStats
from netcore.jobs.journal import JobJournal
from netcore.jobs.plan import Plan
from netcore.jobs.writers import RecordWriter

DEFAULT_BATCH = 128
"""Rows a task carries at most: a task costs about 0.8 ms however small it is."""
TASKS_PER_WORKER = 3
"""Tasks of --batch rows in flight per worker: one running, two on their way. More would only
queue at the worker, and be lost (sent again) if this process is killed."""
MIN_WINDOW = 64
"""Inputs in flight per worker at least (small tasks need more of them to keep it busy)."""


@dataclass(frozen=True, slots=True)
class JobOptions:
    """What ``map``'s options mean for one job (the same for the console's form)."""

    batch: int = DEFAULT_BATCH
    redundancy: int = 1
    spot_check: float = 0.0
    fresh: bool = False
    wait_s: float = 30.0
    """How long a verified task waits for voters."""


@dataclass(slots=True)
class JobRun:
    """What a finished (or interrupted) job leaves for its caller to report."""

    job_id: str
    stats: JobStats
    batch: BatchStats
    rows_per_task: int
    bytes_sent: int
    verify: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def in_flight(batch: int, workers: int) -> int:
    """Inputs in flight at most (the engine's window) for ``workers`` workers."""
    return max(MIN_WINDOW, TASKS_PER_WORKER * batch) * max(1, workers)


def window_for(kind: Any, batch: int, workers: int) -> int:
    """The engine's window: the kind's own bound per worker when it has one."""
    per_worker = getattr(kind, "inputs_per_worker", None)
    if per_worker:
        return per_worker * max(1, workers)
    return in_flight(batch, workers)


def rows_per_task(registry: Any, models: tuple[str, ...], batch: int) -> dict[str, int]:
    """``batch`` for each model whose batch axis takes any size, else 1."""
    rows = {}
    for model in models:
        spec = registry.find(model)
        dims = [tuple(s.shape or ())[:1] for s in spec.inputs] if spec is not None else []
        rows[model] = batch if dims and all(d == (-1,) for d in dims) else 1
    return rows


def vote_for(plan: Plan, redundancy: int) -> tuple[str, str | None]:
    """The vote mode of the plan's kind, and a note when it is not one votes know."""
    from netcore.tasks.votes import VOTE_MODES

    vote = plan.kind.vote_mode()
    if vote in VOTE_MODES:
        return vote, None
    note = (
        f"votes compare results by digest ({vote} is not a vote mode here)"
        if redundancy > 1
        else None
    )
    return "digest", note


async def run_job(
    client: Any,
    plan: Plan,
    writer: RecordWriter,
    journal: JobJournal,
    *,
    options: JobOptions,
    workers: int,
    command: str,
    output: str,
    worker_name: Callable[[str | None], str] | None = None,
    on_progress: Callable[[JobProgress], None] | None = None,
    stop: asyncio.Event | None = None,
) -> JobRun:
    """Run ``plan`` on ``client``'s swarm into ``writer`` (neither committed nor aborted here:
    the caller decides from :attr:`JobStats.interrupted`)."""
    from netcore.tasks.verify import build_verifier

    kind = plan.kind
    registry = client.registry
    spec = kind.spec
    vote, note = vote_for(plan, options.redundancy)
    submitter = build_verifier(
        client, spec.name, options.redundancy, vote, options.spot_check, None, None,
        wait_s=options.wait_s,
    )  # fmt: skip
    rows = rows_per_task(registry, kind.models, options.batch)
    task_options = {m: {"sha256": s.sha256} for m in kind.models if (s := registry.find(m))}
    batcher = Batcher(submitter.submit, rows, options=task_options, worker_name=worker_name)
    job = Job(
        kind, batcher, writer.write, journal=journal, identity=job_identity(kind),
        fresh=options.fresh, window=window_for(kind, options.batch, workers),
        block=max(rows.values()), total=plan.inputs.count(), on_progress=on_progress,
    )  # fmt: skip
    transport = client.transport
    sent_before = transport.bytes_out if transport is not None else 0
    job_id = journal.start_job(job_identity(kind), spec.name, command, output)
    try:
        stats = await job.run(plan.inputs.items(), stop)
        if stats.interrupted:
            await batcher.cancel()
        else:
            await batcher.aclose()
    finally:
        if submitter is not client:
            await submitter.aclose()
    sent = (transport.bytes_out if transport is not None else 0) - sent_before
    return JobRun(
        job_id, stats, batcher.stats, max(rows.values()), sent,
        verify=submitter.stats.to_json() if submitter is not client else None,
        notes=[note] if note else [],
    )  # fmt: skip
