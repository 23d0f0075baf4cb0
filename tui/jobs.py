"""The console's jobs (the Jobs pane and the job form, key j): ``p2pai map`` on the console's
own node, a folder in and a results file out, each job an asyncio task.

A job is planned when it is asked for (an unknown model, an empty folder, an output we cannot
write: one line, nothing started), then runs through :func:`netcore.jobs.launch.run_job`,
journaled in the node's data dir like ``map``'s jobs: quitting the console stops it, and the
same job asked again (or ``p2pai map`` with the same model and folder) finishes it without
computing again what was done. The pane shows one row per job, never one per task, so
thousands of tasks in flight cost the console a row update a refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netcore.jobs.engine import JobProgress

log = logging.getLogger("p2pai.console")

RUNNING, DONE, PARTLY, STOPPED, FAILED = "running", "done", "done*", "stopped", "failed"
"""A job's states: ``done*`` when some inputs failed (their records say why)."""


class JobRefused(Exception):
    """A job that cannot start; the message is one line."""


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What the job form asks for."""

    model: str
    folder: Path
    output: Path
    invert: bool = False


@dataclass(slots=True)
class JobEntry:
    """One job of the console, as the Jobs pane shows it."""

    number: int
    model: str
    folder: Path
    output: Path
    total: int | None = None
    state: str = RUNNING
    progress: JobProgress | None = None
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    rev: int = 0
    """Bumped at each change: the pane redraws a row only when it moved."""

    @property
    def done(self) -> int:
        return self.progress.done if self.progress is not None else 0

    @property
    def failed(self) -> int:
        return self.progress.failed if self.progress is not None else 0


def job_models(registry: Any) -> list[str]:
    """Models this node holds whose kind reads files (what a folder job can run)."""
    from netcore.models.kinds import kind_for

    names = []
    for name in registry.names():
        spec = registry.find(name)
        if spec is None:
            continue
        try:
            if kind_for(spec).suffixes:
                names.append(name)
        except Exception:  # a model without a usable kind (e.g. an extra missing) is not listed
            continue
    return sorted(names)


class ConsoleJobs:
    """Starts, tracks and stops the console's jobs on ``node``."""

    def __init__(self, node: Any, on_change: Callable[[], None] | None = None) -> None:
        self.node = node
        self.on_change = on_change
        self.entries: list[JobEntry] = []
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()

    def running(self) -> int:
        return sum(1 for e in self.entries if e.state == RUNNING)

    def start(self, request: JobRequest) -> JobEntry:
        """Plan the job now (:class:`JobRefused` when it cannot start), then run it."""
        from netcore.jobs.journal import JobJournal, JobJournalError
        from netcore.jobs.plan import PlanError, plan_job
        from netcore.jobs.records import columns
        from netcore.jobs.writers import WriterError, open_writer

        registry = self.node.registry
        spec = registry.find(request.model)
        if spec is None:
            raise JobRefused(f"unknown model '{request.model}': a job runs a model held here")
        if not request.folder.is_dir():
            raise JobRefused(f"input folder {request.folder} does not exist")
        try:
            plan = plan_job(
                spec, [str(request.folder)], (), {"invert": True} if request.invert else {}
            )
            writer = open_writer(request.output, columns(plan.kind))
        except (PlanError, WriterError) as exc:
            raise JobRefused(str(exc)) from None
        try:
            journal = JobJournal(self.node.config.data_dir)
        except JobJournalError as exc:
            writer.abort()
            raise JobRefused(str(exc)) from None
        entry = JobEntry(len(self.entries) + 1, spec.name, request.folder, request.output)
        entry.total = plan.inputs.count()
        self.entries.append(entry)
        task = asyncio.get_running_loop().create_task(self._run(entry, plan, writer, journal))
        self._tasks[entry.number] = task
        task.add_done_callback(lambda _: self._tasks.pop(entry.number, None))
        self._changed()
        return entry

    async def _run(self, entry: JobEntry, plan: Any, writer: Any, journal: Any) -> None:
        from netcore.jobs.launch import JobOptions, run_job

        def progress(p: JobProgress) -> None:
            entry.progress = p
            entry.total = p.total if p.total is not None else entry.total
            entry.rev += 1

        command = f"p2pai map {entry.model} {entry.folder} -o {entry.output}"
        try:
            workers = len(self.node.usable_peers(kind=None)) or 1
            run = await run_job(
                self.node, plan, writer, journal, options=JobOptions(), workers=workers,
                command=command, output=str(entry.output), on_progress=progress,
                stop=self._stop,
            )  # fmt: skip
            stats = run.stats
            if stats.interrupted:
                writer.abort()
                entry.state = STOPPED
                journal.finish_job(run.job_id, "interrupted", stats.to_json())
            else:
                writer.commit()
                entry.state = PARTLY if stats.failed else DONE
                journal.finish_job(run.job_id, "done", stats.to_json())
                log.info(
                    "job %d (%s): %d ok, %d failed, written to %s",
                    entry.number, entry.model, stats.ok, stats.failed, entry.output,
                )  # fmt: skip
        except asyncio.CancelledError:
            writer.abort()
            entry.state = STOPPED
            raise
        except Exception as exc:  # one line in the pane and the log, never a traceback
            writer.abort()
            entry.state = FAILED
            entry.error = " ".join(str(exc).split())[:200] or type(exc).__name__
            log.warning("job %d (%s) failed: %s", entry.number, entry.model, entry.error)
        finally:
            journal.close()
            entry.rev += 1
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def aclose(self) -> None:
        """Stop every job (what was computed stays journaled) and wait for them."""
        self._stop.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
