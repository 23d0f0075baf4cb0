"""One SQLite commit for the writes of one turn of the event loop (used by the journal)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class GroupCommit(Generic[In, Out]):
    """Gathers the writes asked for during one turn of the event loop and commits them in
    one transaction; each caller awaits its own result.

    A commit per task cost more than the task itself (``p2pai submit`` ran at half the speed
    of a run without the journal); the guarantee is the same: each caller goes on only once
    its write is committed."""

    def __init__(self, write: Callable[[list[In]], list[Out]]) -> None:
        self.write = write
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        """Writes waiting for the commit scheduled when the first of them came."""

    async def __call__(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._commit)
        self._pending.append((item, future))
        return await future

    def _commit(self) -> None:
        batch, self._pending = self._pending, []
        try:
            results = self.write([item for item, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
