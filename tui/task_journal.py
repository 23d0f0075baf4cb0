"""The console's tasks in the node's journal (netcore.tasks.journal), and their resume.

The journal is a safety net: each task is committed before it is sent and its outcome when it
arrives, so the next console finishes what a killed one left unfinished and each outcome still
arrives, once. A journal failure is logged and never blocks a task.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .state import NodeLike, TaskRecord

if TYPE_CHECKING:
    import numpy as np

    from netcore.tasks.journal import Journal, JournalTask
    from netcore.tasks.scheduler import TaskOutcome

log = logging.getLogger("p2pai.console")


class ConsoleJournal:
    """One console session's view of the journal: the runs a killed console left, and one
    run of its own, started with its first task."""

    def __init__(self, journal: Journal, interrupted_run_ids: list[str]) -> None:
        self.journal = journal
        self._interrupted = interrupted_run_ids
        self._run_id: str | None = None

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

    def add(self, record: TaskRecord, sample: np.ndarray) -> None:
        """Commit a task before it is sent (``record.journaled`` then names its run)."""
        try:
            if self._run_id is None:
                self._run_id = self.journal.start_run(record.model)
            self.journal.add(
                self._run_id,
                record.model,
                {"": sample},
                expected=record.expected,
                task_id=record.task_id,
            )
            record.journaled = self._run_id
        except Exception as exc:  # the journal is a safety net: never block the task
            log.warning("task %s is not journaled: %s", record.task_id[:8], exc)

    def finish(self, record: TaskRecord, outcome: TaskOutcome) -> None:
        """Commit a journaled task's outcome."""
        try:
            self.journal.finish(record.task_id, outcome)
        except Exception as exc:
            log.warning("task %s outcome is not journaled: %s", record.task_id[:8], exc)
