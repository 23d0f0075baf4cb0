"""Tasks waiting for something the scheduler will announce: a worker, or a free slot."""

from __future__ import annotations

import asyncio


class Waiters:
    """Futures of waiting tasks; :meth:`wake_all` for news, :meth:`wake_one` for one slot."""

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self._futures)

    async def wait(self, timeout: float) -> None:
        """Until woken or ``timeout`` seconds passed, whichever comes first."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._futures.append(fut)
        # A timer on the future itself: asyncio.wait_for wraps it in more futures and
        # callbacks, a cost paid by every task that waits for a slot.
        timer = loop.call_later(timeout, _settle, fut)
        try:
            await fut
        finally:
            timer.cancel()
            if fut in self._futures:
                self._futures.remove(fut)

    def wake_all(self) -> None:
        futures, self._futures = self._futures, []
        for fut in futures:
            if not fut.done():
                fut.set_result(None)

    def wake_one(self) -> None:
        """One slot freed: one waiter, not a herd that would find it taken."""
        while self._futures:
            fut = self._futures.pop(0)
            if not fut.done():
                fut.set_result(None)
                return


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
