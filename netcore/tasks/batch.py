"""Runs of tasks, one sample or a batch of them a task (``p2pai submit [--batch N]``).

A model whose inputs take any size in their first dimension (shape ``-1``) takes a batch of
samples in one task; the worker runs them in one onnxruntime call. This is how throughput
scales past the cost of one message per sample. Predictions are the same as one sample a
task: the rows of a batch are independent, and each sample's result is reported
(:class:`TaskReport`, :mod:`netcore.tasks.results`).

Tasks are numbered from 1, as the journal numbers them (its ``seq``), and reported in that
order (:mod:`netcore.tasks.ordered`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netcore.tasks.ordered import run_in_order
from netcore.tasks.results import Predictions, SampleResult, predictions, sample_results
from netcore.tasks.tally import Tally


@dataclass(slots=True)
class TaskReport:
    """One task's outcome with what it was sent: its samples' places in the run and input."""

    number: int
    """1-based, in the order the run sends its tasks (the journal's ``seq``)."""
    outcome: Any
    first: int
    """0-based position in the run of the task's first sample."""
    count: int
    rows: Sequence[int] | None = None
    """The rows of the input array its samples came from (None: not known)."""
    expected: Sequence[int | None] | None = None
    """Each sample's known label, if any."""
    _predictions: Predictions | None = field(default=None, init=False, repr=False)

    def predictions(self) -> Predictions:
        if self._predictions is None:
            outputs = getattr(self.outcome, "outputs", None) if self.outcome.ok else None
            label_output = getattr(self.outcome, "label_output", None)
            self._predictions = predictions(outputs, label_output, self.count)
        return self._predictions

    def samples(self, names: Sequence[str] = ()) -> list[SampleResult]:
        """Each sample's result (empty for a failed task)."""
        if not self.outcome.ok:
            return []
        return sample_results(self.predictions(), self.first, self.rows, names, self.expected)

    def judged(self) -> tuple[int, int]:
        """(right, judged): samples whose predicted class was checked against a known one."""
        if not self.outcome.ok or self.expected is None:
            return 0, 0
        classes = self.predictions().classes
        if classes is None:
            return 0, 0
        pairs = [(int(c), e) for c, e in zip(classes, self.expected, strict=False) if e is not None]
        return sum(c == e for c, e in pairs), len(pairs)


ReportCallback = Callable[[TaskReport], None]


def predicted_labels(outcome: Any) -> np.ndarray | None:
    """The predicted class of each sample of a batched outcome, or None."""
    if not outcome.ok:
        return None
    name = outcome.label_output or ("label" if "label" in outcome.outputs else None)
    if name is None or name not in outcome.outputs:
        return None
    arr = np.asarray(outcome.outputs[name])
    if arr.dtype.kind not in "iu":
        return None
    return arr.reshape(-1)


async def run_batches(
    client: Any,
    model: str,
    samples: np.ndarray,
    labels: np.ndarray | None,
    total: int,
    batch: int,
    concurrency: int,
    on_report: ReportCallback | None = None,
    task_options: dict[str, Any] | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Send ``total`` samples (cycling over ``samples``) in tasks of ``batch``; summarise.

    The summary counts tasks (``tasks``, ``ok``, ``failed``) and samples (``samples``, and
    with ``batch > 1`` ``samples_ok``); ``accuracy`` is over samples. ``on_report`` hears of
    each task in task order; without it outcomes are only counted (no reorder buffer).
    A set ``stop`` ends the run early: the summary then says ``interrupted``.
    """
    batch = max(1, batch)
    n_tasks = -(-total // batch)
    options = task_options or {}
    # One contiguous copy to slice from, long enough that no batch wraps around.
    need = min(total, len(samples) + batch)
    reps = -(-need // len(samples))
    pool = np.ascontiguousarray(np.concatenate([samples] * reps) if reps > 1 else samples)
    tally = Tally()

    def place(index: int) -> tuple[int, int, int]:
        first = index * batch
        return first, min(batch, total - first), first % len(samples)

    async def work(index: int) -> Any:
        _, count, start = place(index)
        return await client.submit(model, pool[start : start + count], **options)

    def emit(index: int, outcome: Any) -> None:
        first, count, start = place(index)
        rows = [(start + i) % len(samples) for i in range(count)]
        expected = [int(labels[r]) for r in rows] if labels is not None else None
        report = TaskReport(index + 1, outcome, first, count, rows, expected)
        tally.add(report)
        if on_report is not None:
            on_report(report)

    started = time.perf_counter()
    progress = await run_in_order(
        n_tasks, concurrency, work, emit, window=None if on_report else 0, stop=stop
    )
    summary = tally.summary(n_tasks, total, batch, time.perf_counter() - started)
    if progress.interrupted:
        summary["interrupted"] = True
    return summary
