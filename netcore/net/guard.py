"""The connection guard: which key owns each ROUTER connection, by routing id.

A task's reply goes out only while the connection it arrived on is still that key's, so a
connection that takes over another's routing id is served only as itself and never gets the
other's replies (such takeovers are counted). Used by :mod:`netcore.trust.manager`."""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from netcore.net.pump import has_message

log = logging.getLogger("p2pai.trust")

MAX_TRACKED = 4096


@dataclass(slots=True)
class _Owner:
    key: str
    fd: int
    endpoints: tuple[str, ...] = ()
    live: bool = True
    """False once its connection closed: the routing id is kept to spot a takeover."""


class ConnectionGuard:
    """Which key owns each ROUTER connection, by routing id.

    The owner is set by every frame (from its ``User-Id``) together with the socket's file
    descriptor (``SRCFD``); a ROUTER monitor reports closed connections by descriptor, and
    their routing ids lose their owner (replies to them are withheld). Monitor events are read
    before each decision, so a connection that closed is known to be gone before a new one
    may reuse its routing id. A frame from another key on a routing id seen before is a
    reuse (ZeroMQ's own ids never repeat, so only a peer that sets its own does this).
    """

    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self.max_tracked = max_tracked
        self._owners: OrderedDict[bytes, _Owner] = OrderedDict()
        self._monitor: zmq.Socket[Any] | None = None
        self._events: zmq.Socket[Any] | None = None
        self._router: zmq.Socket[Any] | None = None
        self.reused = 0
        """Frames on a routing id that another key owned (a takeover attempt, or a reuse)."""
        self.withheld = 0
        """Replies not sent because their connection is gone or now someone else's."""
        self._in_batch = False

    def attach(self, router: zmq.Socket[Any]) -> None:
        try:
            self._monitor = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        except zmq.ZMQError as exc:  # monitoring unavailable: ownership by frames only
            log.debug("no ROUTER monitor: %s", exc)
            return
        self._router = router
        self._events = zmq.Socket.shadow(self._monitor.underlying)

    def close(self) -> None:
        if self._router is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._router.disable_monitor()
        if self._monitor is not None:
            self._monitor.close(linger=0)
        self._monitor = self._events = self._router = None

    def begin_batch(self) -> None:
        """The transport starts reading a batch of ROUTER frames: read the monitor once for
        all of them (what :meth:`seen` and :meth:`owner` do per call outside a batch).

        Enough for the frames of the batch and the replies sent while it is handled: a
        connection that closed did so, and its event was queued, before a new one could
        reuse its descriptor, and that new one's handshake needs our ZAP handler, which
        runs on this loop, in an earlier pass."""
        self._drain()
        self._in_batch = True

    def end_batch(self) -> None:
        self._in_batch = False

    def _drain_unless_batch(self) -> None:
        if not self._in_batch:
            self._drain()

    def _drain(self) -> None:
        events = self._events
        if events is None:
            return
        try:
            while has_message(events):
                event = parse_monitor_message(events.recv_multipart(zmq.NOBLOCK))
                if event["event"] == zmq.EVENT_DISCONNECTED:
                    fd = event["value"]
                    for owner in self._owners.values():
                        if owner.fd == fd:
                            owner.live = False
        except zmq.ZMQError:
            return

    def seen(self, rid: bytes, key: str, frame: Any) -> bool:
        """A frame from ``key`` on ``rid``; True when ``rid`` belonged to another key."""
        self._drain_unless_batch()
        try:
            fd = int(frame.get(zmq.SRCFD))
        except (zmq.ZMQError, AttributeError, TypeError, ValueError):
            fd = -1
        owner = self._owners.get(rid)
        taken = owner is not None and owner.key != key
        if taken:
            self.reused += 1
        if owner is None or taken or owner.fd != fd or not owner.live:
            self._owners[rid] = _Owner(key, fd)
            self._owners.move_to_end(rid)
            while len(self._owners) > self.max_tracked:
                self._owners.popitem(last=False)
        return taken

    def owner(self, rid: bytes) -> str | None:
        """The key whose connection ``rid`` is, while that connection is open."""
        self._drain_unless_batch()
        found = self._owners.get(rid)
        return found.key if found is not None and found.live else None

    def note_hello(self, rid: bytes, key: str, endpoints: list[str]) -> list[str]:
        """Record a hello's endpoints; returns another live connection's endpoints when the
        same key advertises different ones there (two nodes with one identity)."""
        self._drain_unless_batch()
        owner = self._owners.get(rid)
        if owner is not None and owner.key == key:
            owner.endpoints = tuple(endpoints)
        if not endpoints:
            return []
        for other_rid, other in self._owners.items():
            if (
                other_rid != rid
                and other.live
                and other.key == key
                and other.endpoints
                and set(other.endpoints).isdisjoint(endpoints)
            ):
                return list(other.endpoints)
        return []
