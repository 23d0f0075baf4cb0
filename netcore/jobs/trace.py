"""Which worker computed an item, and how long its tasks took.

A kind reaches the swarm only through ``infer`` and returns result fields, never who did the
work. The engine gives each part of an item its own :class:`Trace` in a context variable while
the kind runs it; :class:`netcore.jobs.batcher.Batcher` adds each task that part's calls rode
on. A context variable follows the part's coroutine (and the tasks it starts), so the items
sharing one batched task each hear of it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(slots=True)
class Trace:
    """The tasks one part of an item rode on."""

    workers: list[str] = field(default_factory=list)
    latency_s: float = 0.0
    tasks: int = 0

    def add(self, worker: str, latency_s: float) -> None:
        self.tasks += 1
        self.latency_s += latency_s
        if worker not in self.workers:
            self.workers.append(worker)

    @property
    def worker(self) -> str | None:
        """The worker (several, comma-separated, for a pipeline spread over them)."""
        return ",".join(self.workers) or None

    @property
    def latency_ms(self) -> float | None:
        return round(self.latency_s * 1000, 3) if self.tasks else None


current: ContextVar[Trace | None] = ContextVar("p2pai_job_trace", default=None)
"""The trace of the part being run (None outside a job)."""
