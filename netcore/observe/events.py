"""Frozen events the node publishes; the CLI prints them, the console renders them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class Event:
    t: float = field(default_factory=_now, kw_only=True)
    """Unix time, seconds."""

    EVENT: ClassVar[str] = "event"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {"event": self.EVENT, **data}


@dataclass(frozen=True, slots=True)
class NodeReady(Event):
    peer_id: str
    endpoint: str
    key: str
    EVENT: ClassVar[str] = "ready"


@dataclass(frozen=True, slots=True)
class PeerUp(Event):
    peer_id: str
    name: str
    endpoint: str
    source: str = "mdns"
    reach: str = "direct"
    """``direct``, ``relayed`` (netcore.net.relaying) or ``punched`` (netcore.net.punching)."""
    relay: str = ""
    """The relay's endpoint when relayed."""
    EVENT: ClassVar[str] = "peer_up"


@dataclass(frozen=True, slots=True)
class PeerReach(Event):
    """How we reach a peer changed: ``relayed`` <-> ``punched`` (netcore.net.punching)."""

    peer_id: str
    reach: str
    relay: str = ""
    EVENT: ClassVar[str] = "peer_reach"


@dataclass(frozen=True, slots=True)
class PeerDown(Event):
    peer_id: str
    reason: str
    """``bye``, ``goodbye`` or ``expired``."""
    EVENT: ClassVar[str] = "peer_down"


@dataclass(frozen=True, slots=True)
class PeerEvasive(Event):
    peer_id: str
    EVENT: ClassVar[str] = "peer_evasive"


@dataclass(frozen=True, slots=True)
class PeerAlive(Event):
    """An evasive peer was heard from again."""

    peer_id: str
    EVENT: ClassVar[str] = "peer_alive"


@dataclass(frozen=True, slots=True)
class PeerUpdated(Event):
    """Load or latency of a peer changed (high rate: consumers may coalesce)."""

    peer_id: str
    rtt_ms: float | None
    inflight: int
    queued: int
    capacity: int
    EVENT: ClassVar[str] = "peer_updated"


@dataclass(frozen=True, slots=True)
class TaskDone(Event):
    """A task this node submitted has its outcome."""

    task_id: str
    worker: str
    ok: bool
    latency_ms: float
    model: str = ""
    attempts: int = 1
    error: str = ""
    label: int | None = None
    confidence: float | None = None
    code: str = ""
    """The protocol error code of a failed task (``timeout``, ``bad_input``...)."""
    EVENT: ClassVar[str] = "task_done"


@dataclass(frozen=True, slots=True)
class TaskRetry(Event):
    task_id: str
    worker: str
    reason: str
    EVENT: ClassVar[str] = "task_retry"


@dataclass(frozen=True, slots=True)
class TaskServed(Event):
    """A task this node executed for a peer."""

    task_id: str
    requester: str
    ok: bool
    took_us: int
    model: str = ""
    error: str = ""
    EVENT: ClassVar[str] = "task_served"


@dataclass(frozen=True, slots=True)
class NodeError(Event):
    message: str
    EVENT: ClassVar[str] = "error"


@dataclass(frozen=True, slots=True)
class PeerQuarantine(Event):
    """A peer's reputation put it in quarantine (never used), or took it out."""

    peer_id: str
    name: str
    quarantined: bool
    reason: str
    """Why, e.g. ``score 0.31: lost 3 of 4 votes (...)``; empty when released."""
    score: float
    EVENT: ClassVar[str] = "peer_quarantine"


@dataclass(frozen=True, slots=True)
class LogLine(Event):
    level: str
    message: str
    EVENT: ClassVar[str] = "log"


def event_kinds() -> frozenset[str]:
    """Every ``EVENT`` name a node publishes (for :meth:`Node.events` filters)."""
    kinds: set[str] = set()
    pending = list(Event.__subclasses__())
    while pending:
        cls = pending.pop()
        kinds.add(cls.EVENT)
        pending.extend(cls.__subclasses__())
    return frozenset(kinds)
