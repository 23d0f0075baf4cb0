"""Textual messages the console posts to itself.

Node events enter the UI in one place, the app's bridge worker, which turns each
:mod:`netcore.observe.events` event into one of these with :class:`EventTranslator`. Log records
(from any thread) become :class:`LogLine`. High-rate messages set ``can_replace`` so a burst
of them collapses into the latest one in the queue.
"""

from __future__ import annotations

import logging

from textual.message import Message

from netcore.observe import events as ev


class NodeStarted(Message):
    """The node is serving (``NodeReady``)."""

    def __init__(self, peer_id: str, endpoint: str) -> None:
        super().__init__()
        self.peer_id = peer_id
        self.endpoint = endpoint


class NodeProblem(Message):
    """The node reports an error it survived (``NodeError``)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class PeerJoined(Message):
    def __init__(self, peer_id: str, name: str, endpoint: str) -> None:
        super().__init__()
        self.peer_id = peer_id
        self.name = name
        self.endpoint = endpoint


class PeerLeft(Message):
    def __init__(self, peer_id: str, reason: str) -> None:
        super().__init__()
        self.peer_id = peer_id
        self.reason = reason


class PeerLiveness(Message):
    """A peer went evasive (``alive=False``) or was heard from again."""

    def __init__(self, peer_id: str, alive: bool) -> None:
        super().__init__()
        self.peer_id = peer_id
        self.alive = alive


class PeerLoad(Message):
    """A peer's load or round trip changed; the numbers are read from the peer table."""

    def __init__(self, peer_id: str) -> None:
        super().__init__()
        self.peer_id = peer_id

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PeerLoad) and message.peer_id == self.peer_id


class TaskRetried(Message):
    def __init__(self, task_id: str, worker: str, reason: str) -> None:
        super().__init__()
        self.task_id = task_id
        self.worker = worker
        self.reason = reason


class TasksServed(Message):
    """Running totals of tasks this node executed for peers (cumulative, so replaceable)."""

    def __init__(self, ok: int, failed: int) -> None:
        super().__init__()
        self.ok = ok
        self.failed = failed

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TasksServed)


class LogLine(Message):
    """One log record, already formatted (``created`` is Unix time)."""

    def __init__(self, level: int, levelname: str, logger: str, text: str, created: float) -> None:
        super().__init__()
        self.level = level
        self.levelname = levelname
        self.logger = logger
        self.text = text
        self.created = created


class EventTranslator:
    """Node event -> console message (``None`` for events the console does not show).

    Holds the running totals that make :class:`TasksServed` replaceable. ``TaskDone`` is not
    translated: the console takes each outcome from its own ``submit`` call, which it awaits
    anyway, so no outcome is lost when the event queue overflows.
    """

    def __init__(self) -> None:
        self.served_ok = 0
        self.served_failed = 0

    def __call__(self, event: ev.Event) -> Message | None:
        if isinstance(event, ev.PeerUpdated | ev.PeerReach):
            return PeerLoad(event.peer_id)
        if isinstance(event, ev.TaskServed):
            if event.ok:
                self.served_ok += 1
            else:
                self.served_failed += 1
            return TasksServed(self.served_ok, self.served_failed)
        if isinstance(event, ev.TaskRetry):
            return TaskRetried(event.task_id, event.worker, event.reason)
        if isinstance(event, ev.PeerUp):
            return PeerJoined(event.peer_id, event.name, event.endpoint)
        if isinstance(event, ev.PeerDown):
            return PeerLeft(event.peer_id, event.reason)
        if isinstance(event, ev.PeerEvasive):
            return PeerLiveness(event.peer_id, alive=False)
        if isinstance(event, ev.PeerAlive):
            return PeerLiveness(event.peer_id, alive=True)
        if isinstance(event, ev.NodeReady):
            return NodeStarted(event.peer_id, event.endpoint)
        if isinstance(event, ev.NodeError):
            return NodeProblem(event.message)
        if isinstance(event, ev.LogLine):
            level = logging.getLevelName(event.level.upper())
            return LogLine(
                level if isinstance(level, int) else logging.INFO,
                event.level.upper(),
                "p2pai.node",
                event.message,
                event.t,
            )
        return None
