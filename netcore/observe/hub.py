"""The node's event hub: every published event reaches each subscriber's bounded queue.

A subscriber too slow to keep up loses events (counted in ``dropped``), never blocks the
node. Observers are called synchronously with each event (metrics count them that way)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Collection

from netcore.observe.events import Event

EVENT_QUEUE = 10_000


class Subscription:
    """An async iterator over the hub's events, registered when created (so none is missed)."""

    def __init__(self, hub: EventHub, kinds: Collection[str] | None = None) -> None:
        self._hub = hub
        self.kinds = None if kinds is None else frozenset(kinds)
        """The ``EVENT`` names queued; None for all. Each queued event wakes the reader, so a
        reader that drops ``peer_updated`` (one per pong) should not ask for it."""
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(EVENT_QUEUE)
        hub.subscribers.append(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        if self in self._hub.subscribers:
            self._hub.subscribers.remove(self)
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class EventHub:
    """Subscribers and observers of one node's events."""

    def __init__(self, counters: dict[str, int]) -> None:
        self.subscribers: list[Subscription] = []
        self.observers: list[Callable[[Event], None]] = []
        """Called with each published event, synchronously (metrics); none by default."""
        self.counters = counters
        """Where ``events_dropped`` is counted (the node's counters)."""

    def subscribe(self, kinds: Collection[str] | None = None) -> Subscription:
        return Subscription(self, kinds)

    def publish(self, event: Event) -> None:
        for observe in self.observers:
            observe(event)
        for sub in self.subscribers:
            if sub.kinds is not None and event.EVENT not in sub.kinds:
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.counters["events_dropped"] += 1

    def close(self) -> None:
        for sub in list(self.subscribers):
            sub.close()
