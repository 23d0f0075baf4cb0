"""Reading a ZeroMQ socket from the asyncio selector, without a future per message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import zmq

log = logging.getLogger("p2pai.transport")

DRAIN_BATCH = 64
"""Messages a pump takes in one pass: under load this saves a loop pass per message; the
bound keeps other callbacks running."""

_POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)
_DONTWAIT = int(zmq.DONTWAIT)


def has_message(sock: zmq.Socket[Any]) -> bool:
    """Whether a message waits on ``sock`` (``EVENTS``; reading it also settles the socket's
    edge-triggered descriptor)."""
    return bool(int(sock.getsockopt(_EVENTS)) & _POLLIN)


class Pump:
    """Reads one ZeroMQ socket from the event loop's selector, without a future per message.

    pyzmq's asyncio socket creates a future per receive, re-registers its descriptor with
    epoll around each one and builds enum flags on the way: at idle and under load that was
    most of the transport's cost. Here the socket's descriptor is registered once; when it
    wakes, or when :meth:`kick` is called, queued messages are taken with non-blocking reads
    while ``EVENTS`` says there are more (the descriptor is edge-triggered: it only says
    "look", so every operation on the socket that may have consumed a wake-up is followed by
    a look, see :meth:`after_send`). At most ``DRAIN_BATCH`` go in one pass; the next
    pass is scheduled behind whatever else is ready, so one busy peer cannot starve the loop.
    """

    __slots__ = ("_scheduled", "begin", "closed", "copy", "end", "fd", "handle", "loop", "sock")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: zmq.Socket[Any],
        handle: Callable[[list[Any]], None],
        copy: bool,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.handle = handle
        self.copy = copy
        self.fd = int(sock.getsockopt(zmq.FD))
        self.closed = False
        self._scheduled = False
        self.begin: Callable[[], None] | None = None
        """Called before a pass reads its first message, and ``end`` after its last."""
        self.end: Callable[[], None] | None = None
        loop.add_reader(self.fd, self.pump)
        self.kick()  # messages may be queued already

    def pump(self) -> None:
        self._scheduled = False
        if self.begin is not None:
            self.begin()
        try:
            if self._pass():
                self.kick()
        finally:
            if self.end is not None:
                self.end()

    def _pass(self) -> bool:
        """Handle up to DRAIN_BATCH messages; True when more may be waiting."""
        sock = self.sock
        for _ in range(DRAIN_BATCH):
            if self.closed:
                return False
            try:
                if not has_message(sock):
                    return False
                frames = sock.recv_multipart(_DONTWAIT, copy=self.copy)
            except zmq.ZMQError as exc:
                if exc.errno in (zmq.ETERM, zmq.ENOTSOCK):
                    self.close()
                return False
            try:
                self.handle(frames)
            except Exception:
                log.exception("message handler failed")
        return True

    def kick(self) -> None:
        """Look at the socket again soon (after a send, or when a batch was cut short)."""
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self.loop.call_soon(self.pump)

    def after_send(self) -> None:
        """A send may have taken the descriptor's wake-up for a message that came meanwhile."""
        try:
            if has_message(self.sock):
                self.kick()
        except zmq.ZMQError:
            pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(self.fd)
