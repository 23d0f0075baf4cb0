"""Ctrl-C in a command that reports its work: stop, say what was done, then exit 130.

``run_async`` (netcore.cli.common) cancels the command's coroutine on SIGINT/SIGTERM; a
command that must report what it did before it exits (``submit``) installs these handlers
instead: the first signal sets an event the run watches, a second one cancels at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Interrupts:
    """The first SIGINT/SIGTERM asks the run to stop (and report); a second one quits."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal or signal.SIGINT)


def catch_interrupts(stop: asyncio.Event) -> Interrupts:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    caught = Interrupts()

    def on_signal(sig: int) -> None:
        if stop.is_set():
            if task is not None:
                task.cancel()  # a second Ctrl-C: no summary, quit now
            return
        caught.signal = sig
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)
    return caught


async def until_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``work``'s result, or None (and ``work`` cancelled) if ``stop`` is set first."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None
