"""Running the console's tasks: calls go down to ``Node.submit``, outcomes go into its state.

Each task is a tracked asyncio task behind a semaphore (at most ``max_concurrency`` inside
``Node.submit``; the rest wait for a slot, shown as queued), journaled before it is sent
(:mod:`tui.task_journal`), submitted to the node or, in verified mode, to a
:class:`netcore.tasks.verify.Verifier`. Nothing here imports Textual: the app decides what to
show, this module only keeps the :class:`~tui.state.TaskBook` and the latency window current.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .state import LatencyWindow, NodeLike, TaskBook, TaskRecord
from .task_journal import ConsoleJournal

if TYPE_CHECKING:
    import numpy as np

    from netcore.tasks.verify import Verifier

log = logging.getLogger("p2pai.console")

VERIFY_REDUNDANCY = 3
"""Workers per task in verified mode (v): the majority label wins (netcore.tasks.verify)."""
MIN_VERIFY_REDUNDANCY = 2
"""Fewer workers than ``VERIFY_REDUNDANCY`` (``make run`` starts 2): verified mode uses all of
them, and all must agree (a strict majority of 2); one answer alone verifies nothing."""
MAX_CONCURRENCY = 64
"""Tasks inside ``Node.submit`` at once; the rest wait for a slot, shown as queued."""


class TaskRunner:
    """The console's tasks in flight, from ``start`` to their outcome in the book."""

    def __init__(
        self,
        node: NodeLike,
        book: TaskBook,
        latency: LatencyWindow,
        clock: Callable[[], float],
        workers_available: Callable[[], bool],
        *,
        max_concurrency: int = MAX_CONCURRENCY,
        seed: int | None = None,
    ) -> None:
        """``workers_available`` says whether a worker can take the console's tasks now (a
        task that starts without one shows as waiting); ``seed`` fixes the samples picked."""
        self.node = node
        self.book = book
        self.latency = latency
        self.clock = clock
        self.workers_available = workers_available
        self.max_concurrency = max_concurrency
        self.rng = random.Random(seed)
        self.journal: ConsoleJournal | None = None
        """This console's task journal, once the node runs (see :meth:`open_journal`)."""
        self.verify = False
        """Verified mode: each task on ``VERIFY_REDUNDANCY`` workers, the majority wins."""
        self.verifier: Verifier | None = None
        self.worker_name: Callable[[str], str] = lambda peer_id: peer_id[:8]
        """How failures name a worker in the log (the app sets its peers' names)."""
        self.on_idle: Callable[[], None] | None = None
        """Called when the last task in flight got its outcome (the app redraws then)."""
        self._verify_seen: tuple[int, ...] = (0, 0, 0, 0)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        """Tasks started and without their outcome yet (waiting for a slot or submitted)."""
        return len(self._tasks)

    # --- starting tasks ----------------------------------------------------------------------

    def dispatch_samples(
        self,
        count: int,
        samples: tuple[np.ndarray, np.ndarray | None],
        model: str,
        pin: str | None,
    ) -> None:
        """Start ``count`` tasks, each on a random sample (labelled when ``samples`` has labels)."""
        x, y = samples
        tasks = []
        for _ in range(count):
            index = self.rng.randrange(len(x))
            expected = int(y[index]) if y is not None else None
            task_id = f"{self.rng.getrandbits(64):016x}"
            record = self.book.add(task_id, model, pin=pin, expected=expected)
            tasks.append((record, x[index : index + 1]))
        if self.journal is not None:
            self.journal.add(tasks)  # all of them in one commit, before any is sent
        for record, sample in tasks:
            self.start(record, sample)

    def open_journal(self) -> int:
        """Journal tasks from now on and restart those a previous console left unfinished (it
        was killed); returns how many were restarted."""
        self.journal = ConsoleJournal.open(self.node)
        if self.journal is None:
            return 0
        pending = self.journal.claim_interrupted()
        for run_id, entry in pending:
            record = self.book.add(entry.task_id, entry.model, expected=entry.expected)
            record.journaled = run_id
            self.start(record, next(iter(entry.inputs.values())))
        return len(pending)

    def start(self, record: TaskRecord, sample: np.ndarray) -> None:
        """Run one booked task as a tracked asyncio task."""
        task = asyncio.get_running_loop().create_task(self._run(record, sample))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks and self.on_idle is not None:
            self.on_idle()

    async def _run(self, record: TaskRecord, sample: np.ndarray) -> None:
        options: dict[str, Any] = {"task_id": record.task_id}
        journal = self.journal
        if record.pin is not None:
            options["pin"] = record.pin
        try:
            async with self._slots:
                self.book.start(record.task_id, self.workers_available())
                submitter: Any = self.verifier if self.verify else self.node
                outcome = await submitter.submit(record.model, sample, **options)
        except asyncio.CancelledError:
            self.book.forget(record.task_id)
            raise
        except Exception as exc:
            self.book.fail(record.task_id, f"{type(exc).__name__}: {exc}")
            log.warning("task %s: %s: %s", record.task_id[:8], type(exc).__name__, exc)
            return
        if journal is not None and record.journaled:
            await journal.finish(record, outcome)
        finished = self.book.finish(record.task_id, outcome)
        if self.verify:
            self._report_verification()
        if finished is None:
            return
        self.latency.add(outcome.latency_s * 1000, self.clock())
        if not outcome.ok:  # the Tasks table has room for the start of it; the log has all of it
            where = f" on {self.worker_name(outcome.worker)}" if outcome.worker else ""
            log.warning(
                "task %s (%s) failed%s: %s", record.task_id[:8], record.model, where, finished.error
            )

    # --- verified mode -----------------------------------------------------------------------

    def can_verify(self) -> bool:
        """Verified mode needs a node with a scheduler (a running, real one)."""
        return getattr(self.node, "scheduler", None) is not None

    def verify_workers(self, model: str) -> int:
        """Distinct workers a verified task for ``model`` can use now (as the Verifier counts)."""
        scheduler = getattr(self.node, "scheduler", None)
        if scheduler is None:
            return 0
        return len(scheduler.candidates(model, None))

    @property
    def redundancy(self) -> int:
        """Workers per verified task, as last set by :meth:`fit_redundancy`."""
        return self.verifier.redundancy if self.verifier is not None else VERIFY_REDUNDANCY

    def fit_redundancy(self, workers: int) -> int | None:
        """Verified tasks on ``VERIFY_REDUNDANCY`` workers, or on all ``workers`` when fewer
        (at least ``MIN_VERIFY_REDUNDANCY``); returns that redundancy, None when too few."""
        if workers < MIN_VERIFY_REDUNDANCY:
            return None
        redundancy = min(VERIFY_REDUNDANCY, workers)
        if self.verifier is None:
            from netcore.tasks.verify import Verifier

            self.verifier = Verifier(self.node, redundancy=redundancy, vote="label")
            self.verifier.on_wait = self._waits_for_voters
        # Both read per task: a change applies to the next task, not those in flight.
        self.verifier.redundancy = self.verifier.extra = redundancy
        return redundancy

    def _waits_for_voters(self, task_id: str, waiting: bool) -> None:
        """A verified task waits for voters (too few workers past probation) or stops waiting:
        its row says so, and the log when it starts."""
        record = self.book.get(task_id)
        if record is None or record.finished:
            return
        record.worker = "waiting for voters" if waiting else ""
        record.rev += 1
        if waiting:
            log.info("task %s waits for voters (workers past probation, on distinct hosts)",
                     task_id[:8])  # fmt: skip

    def verify_report(self) -> str:
        """What verification did so far, as ``submit`` prints it (empty before verified mode)."""
        if self.verifier is None:
            return ""
        from netcore.tasks.verify import verify_summary

        return verify_summary(self.verifier.stats.to_json(), self.verifier.redundancy, "label")

    def _report_verification(self) -> None:
        """Log the verification line when checks found something or tasks waited."""
        if self.verifier is None:
            return
        stats = self.verifier.stats
        now = (stats.mismatches, stats.quarantined, stats.waited, stats.hosts_voted)
        if now != self._verify_seen:
            self._verify_seen = now
            log.info("%s", self.verify_report())

    def toggle_verify(self) -> bool:
        """Turn verified mode on or off; returns whether it is now on (set the redundancy with
        :meth:`fit_redundancy` first)."""
        self.verify = not self.verify
        return self.verify

    # --- the end -----------------------------------------------------------------------------

    async def wait_idle(self) -> None:
        """Wait until every started task has its outcome (tests, and nothing else)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the verifier's background work and cancel every task still in flight."""
        if self.verifier is not None:
            await self.verifier.aclose()
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
