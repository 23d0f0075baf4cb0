"""The console's tasks in the node's journal (netcore.tasks.journal), and their resume.

The journal is a safety net: each task is committed before it is sent and its outcome when it
arrives, so the next console finishes what a killed one left unfinished and each outcome still
arrives, once. A journal failure is logged and never blocks a task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .state import NodeLike, TaskRecord

if TYPE_CHECKING:
    import numpy as np

    from netcore.tasks.group_commit import GroupCommit
    from netcore.tasks.journal import Journal, JournalTask
    from netcore.tasks.scheduler import TaskOutcome

log = logging.getLogger("p2pai.console")


class ConsoleJournal:
    """One console session's view of the journal: the runs a killed console left, and one
    run of its own, started with its first task."""

    def __init__(self, journal: Journal, interrupted_run_ids: list[str]) -> None:
        from netcore.tasks.group_commit import GroupCommit

        self.journal = journal
        self._interrupted = interrupted_run_ids
        self._run_id: str | None = None
        self._finish: GroupCommit[tuple[str, TaskOutcome], bool] = GroupCommit(journal.finish_many)
        """The outcomes of one turn of the loop share a commit (a burst's replies come in
        batches: a commit each cost more than the task)."""

    @classmethod
    def open(cls, node: NodeLike) -> ConsoleJournal | None:
        """The journal in the node's data dir; None for a fake node or when it cannot open."""
        config = getattr(node, "config", None)
        if config is None or not Path(config.data_dir).is_dir():
            return None  # not a real node (the node creates its data dir when it starts)
        from netcore.tasks.journal import Journal, JournalError
        from netcore.tasks.resume import interrupted_runs

        try:
            journal = Journal(config.data_dir)
            stale = interrupted_runs(journal)
        except JournalError as exc:
            log.warning("tasks are not journaled: %s", exc)
            return None
        return cls(journal, [run.run_id for run in stale])

    def claim_interrupted(self) -> list[tuple[str, JournalTask]]:
        """Take over the runs a killed console left: their pending tasks, with their run ids."""
        pending = [
            (run_id, entry)
            for run_id in self._interrupted
            for entry in self.journal.pending(run_id)
        ]
        for run_id in self._interrupted:
            self.journal.claim(run_id)
        self._interrupted = []
        return pending

    def add(self, tasks: Sequence[tuple[TaskRecord, np.ndarray]]) -> None:
        """Commit tasks before they are sent, in one transaction (one key press: a burst is
        one commit, not a hundred); ``record.journaled`` then names their run."""
        if not tasks:
            return
        from netcore.tasks.journal import NewTask

        try:
            if self._run_id is None:
                self._run_id = self.journal.start_run(tasks[0][0].model)
            run_id = self._run_id
            self.journal.add_many(
                [
                    NewTask(run_id, r.model, {"": sample}, expected=r.expected, task_id=r.task_id)
                    for r, sample in tasks
                ]
            )
        except Exception as exc:  # the journal is a safety net: never block the task
            log.warning("%d task(s) not journaled: %s", len(tasks), exc)
            return
        for record, _ in tasks:
            record.journaled = run_id

    async def finish(self, record: TaskRecord, outcome: TaskOutcome) -> None:
        """Commit a journaled task's outcome (with the others of this turn of the loop)."""
        try:
            await self._finish((record.task_id, outcome))
        except Exception as exc:
            log.warning("task %s outcome is not journaled: %s", record.task_id[:8], exc)
