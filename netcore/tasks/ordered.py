"""Run numbered work items concurrently and hand their results on in number order.

With many tasks in flight their outcomes arrive out of order; a reader of ``submit``'s output
wants them in task order. Results that arrive early wait in a buffer until every earlier one
is in. The buffer is bounded: no item is started more than ``window`` items past the oldest
one still running, so a task that takes long (a retry after a timeout) holds back the
dispatch of new ones by at most ``window`` items, and memory holds at most ``window``
results (for ``submit``: four times the tasks in flight, see :data:`WINDOW_PER_LANE`).

A ``stop`` event ends a run early (Ctrl-C): no new item starts, the running ones are
cancelled, and the results already in are handed on (in order, with gaps) before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

R = TypeVar("R")

WINDOW_PER_LANE = 4
"""Results buffered at most, per item in flight."""


@dataclass(slots=True)
class Progress:
    """How far a run got."""

    started: int = 0
    emitted: int = 0
    interrupted: bool = False


class _InOrder(Generic[R]):
    def __init__(self, emit: Callable[[int, R], None]) -> None:
        self.emit = emit
        self.next = 0
        self.early: dict[int, R] = {}
        self.moved = asyncio.Condition()
        self.emitted = 0

    async def put(self, index: int, result: R) -> None:
        self.early[index] = result
        if index != self.next:
            return
        while self.next in self.early:
            self.emit_now(self.next, self.early.pop(self.next))
            self.next += 1
        async with self.moved:
            self.moved.notify_all()

    def flush(self) -> None:
        """Hand on what is in, in order, skipping the items that never finished."""
        for index in sorted(self.early):
            self.emit_now(index, self.early.pop(index))

    def emit_now(self, index: int, result: R) -> None:
        self.emitted += 1
        self.emit(index, result)


async def run_in_order(
    count: int,
    concurrency: int,
    work: Callable[[int], Awaitable[R]],
    emit: Callable[[int, R], None],
    *,
    window: int | None = None,
    stop: asyncio.Event | None = None,
) -> Progress:
    """Run ``work(0)`` .. ``work(count - 1)``, ``concurrency`` at a time; ``emit`` each result
    in index order. ``window=None``: ``WINDOW_PER_LANE`` x the lanes; ``0``: emit each result
    as it arrives (no buffer)."""
    lanes = max(1, min(concurrency, count))
    if window is None:
        window = WINDOW_PER_LANE * lanes
    window = max(window, lanes) if window else 0
    progress = Progress()
    order: _InOrder[R] = _InOrder(emit)
    stopping = stop or asyncio.Event()

    def room() -> bool:
        return stopping.is_set() or progress.started < order.next + window

    async def lane() -> None:
        while progress.started < count and not stopping.is_set():
            if window and not room():
                async with order.moved:
                    await order.moved.wait_for(room)
                continue
            index = progress.started
            progress.started += 1
            result = await work(index)
            if window:
                await order.put(index, result)
            else:
                order.emit_now(index, result)

    tasks = [asyncio.ensure_future(lane()) for _ in range(lanes)] if count else []
    watcher = asyncio.ensure_future(stopping.wait())
    try:
        pending: set[asyncio.Future[Any]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(
                pending | {watcher}, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(watcher)
            for task in done:
                error = None if task is watcher or task.cancelled() else task.exception()
                if error is not None:
                    raise error
            if watcher in done:
                progress.interrupted = True
                async with order.moved:
                    order.moved.notify_all()
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                break
    finally:
        watcher.cancel()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        order.flush()
        progress.emitted = order.emitted
        if stopping.is_set() and progress.emitted < count:
            progress.interrupted = True
    return progress
