"""A submitter that journals each task before it is sent and its outcome before it returns
(:mod:`netcore.tasks.journal` is the database)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from netcore.tasks.group_commit import GroupCommit
from netcore.tasks.journal import BARE, Journal, JournalTask, NewTask, RunPlan


class JournaledSubmitter:
    """Wraps anything with ``submit(model, inputs, **options)`` (a Node, a Verifier) so that
    each task is journaled before it is sent and its outcome before it is returned."""

    def __init__(
        self,
        inner: Any,
        journal: Journal,
        model: str,
        run_id: str | None = None,
        plan: RunPlan | None = None,
        expected: Callable[[int], int | None] | None = None,
        labels: Sequence[str] = (),
    ) -> None:
        self.inner = inner
        self.journal = journal
        self.model = model
        self.run_id = run_id or journal.start_run(model, plan, labels)
        self.expected = expected
        """The known label of the task at a position in the run (0-based), if any."""
        self._sent = 0
        self.duplicates = 0
        self._add = GroupCommit(journal.add_many)
        self._finish = GroupCommit(journal.finish_many)

    async def submit(self, model: str, inputs: Any, **options: Any) -> Any:
        arrays = {BARE: inputs} if isinstance(inputs, np.ndarray) else dict(inputs)
        expected = self.expected(self._sent) if self.expected is not None else None
        self._sent += 1
        task_id = await self._add(
            NewTask(self.run_id, model, arrays, options.get("sha256"), expected)
        )
        return await self._run(task_id, model, arrays, options)

    async def submit_at(
        self, model: str, inputs: np.ndarray, expected: int | None, **options: Any
    ) -> Any:
        """Journal and run the run's next planned task (on resume), with its known label."""
        task_id = await self._add(
            NewTask(self.run_id, model, {BARE: inputs}, options.get("sha256"), expected)
        )
        return await self._run(task_id, model, {BARE: inputs}, options)

    async def _run(
        self, task_id: str, model: str, arrays: dict[str, np.ndarray], options: dict[str, Any]
    ) -> Any:
        inputs: Any = arrays[BARE] if set(arrays) == {BARE} else arrays
        # Cancelled before the outcome is in (Ctrl-C): the task stays pending, for --resume.
        outcome = await self.inner.submit(model, inputs, task_id=task_id, **options)
        commit = asyncio.ensure_future(self._finish((task_id, outcome)))
        try:
            first = await asyncio.shield(commit)
        except asyncio.CancelledError:
            # Cancelled while the outcome is being committed: once committed it is never run
            # again, so it must still reach the caller. The commit is one loop turn away.
            first = await commit
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        if not first:
            self.duplicates += 1  # another process finished it first: not ours to report
        return outcome

    async def resume(self, entry: JournalTask, **options: Any) -> Any:
        """Run a pending task of an interrupted run under its journaled id."""
        if entry.sha256:
            options.setdefault("sha256", entry.sha256)
        return await self._run(entry.task_id, entry.model, entry.inputs, options)

    def close(self) -> None:
        self.journal.end_run(self.run_id)
