"""The peer table: what we know of each peer and its liveness, with no I/O.

Liveness is an explicit state machine driven by an injected clock:

    ALIVE --(silent > evasive_after)--> EVASIVE --(silent > expired_after)--> EXPIRED (dropped)
      ^------------(any message)-----------'

A ``bye`` drops a peer at once (an mDNS goodbye only once pings over CURVE go unanswered,
:mod:`netcore.net.hints`). The node calls :meth:`PeerTable.tick`
periodically and turns the returned transitions into events.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

DIRECT = "direct"
RELAYED = "relayed"
PUNCHED = "punched"
THROUGH_RELAY = frozenset({RELAYED, PUNCHED})
"""Reaches whose dials go to the local end of a relay's route (netcore.net.relaying): a
punched link is carried by that route's listener too, with the relay as its fallback."""


class PeerState(enum.Enum):
    ALIVE = "alive"
    EVASIVE = "evasive"
    EXPIRED = "expired"


@dataclass(slots=True)
class Peer:
    """One remote node, keyed by ``peer_id`` (the hash of its authenticated key)."""

    peer_id: str
    key: str
    """Z85 public key."""
    name: str = ""
    """From its authenticated ``hello`` only."""
    mdns_name: str = ""
    """The name its mDNS record gives: unauthenticated, for messages about a peer that never
    greeted us (e.g. one whose allowlist refused our key), never for anything else."""
    endpoints: list[str] = field(default_factory=list)
    caps: list[str] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    accel: list[str] = field(default_factory=list)
    capacity: int = 1
    source: str = "mdns"
    """How we first learned of it: ``mdns``, ``hello``, ``static``, ``shared`` or ``relay``
    (a relay's registry, :mod:`netcore.net.relaying`)."""
    reach: str = DIRECT
    """How our link to it goes: ``direct``, ``relayed`` (through the relay :attr:`relay`,
    spliced byte for byte: CURVE still runs end to end), or ``punched`` (a direct TCP
    connection opened through both NATs, :mod:`netcore.net.punching`; the relay is the
    fallback)."""
    relay: str = ""
    """The relay's endpoint when :attr:`reach` is ``relayed`` or ``punched``."""
    punched_to: str = ""
    """``host:port`` of the punched connection's other end when :attr:`reach` is ``punched``."""
    punches: bool = False
    """Its ``hello`` says it answers ``punch`` (docs/protocol.md, "Hole punching")."""
    in_mdns: bool = False
    """Seen by mDNS at some point, whatever brought it first: sharing need not cover it."""
    state: PeerState = PeerState.ALIVE
    first_seen: float = 0.0
    last_seen: float = 0.0
    last_ping: float = 0.0
    greeted: bool = False
    """True once our DEALER's ``hello`` was answered: we may send it requests."""
    announced: bool = False
    """True once ``PeerUp`` was published for it."""
    rtt: float | None = None
    """Smoothed round trip of ping and task replies, seconds."""
    remote_inflight: int = 0
    remote_queued: int = 0
    inflight: int = 0
    """Our attempts outstanding on this peer."""
    tasks_ok: int = 0
    tasks_failed: int = 0
    score: float | None = None
    """Reputation score, 0-1 (:mod:`netcore.trust.reputation`); None until known."""
    quarantine: str = ""
    """Why the peer is quarantined (never used as a worker); empty when it is not."""
    serves_back: bool = False
    """Its hello said it answers ``model_get`` on its DEALER (``dealer_serves``): a worker can
    fetch a model from it on the connection its task came on (docs/protocol.md)."""

    @property
    def endpoint(self) -> str:
        return self.endpoints[0] if self.endpoints else ""

    def has_model(self, name: str, sha256: str | None = None) -> bool:
        return any(
            m.get("name") == name and (sha256 is None or m.get("sha256") == sha256)
            for m in self.models
        )

    def observe_rtt(self, sample: float) -> None:
        self.rtt = sample if self.rtt is None else 0.8 * self.rtt + 0.2 * sample

    @property
    def success_rate(self) -> float | None:
        total = self.tasks_ok + self.tasks_failed
        return self.tasks_ok / total if total else None


@dataclass(frozen=True, slots=True)
class Transition:
    peer: Peer
    state: PeerState


class PeerTable:
    """Peers by id, with liveness; never touches a socket."""

    def __init__(
        self,
        evasive_after: float = 3.0,
        expired_after: float = 10.0,
        ping_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.evasive_after = evasive_after
        self.expired_after = expired_after
        self.ping_interval = ping_interval
        self.clock = clock
        self._peers: dict[str, Peer] = {}
        self.resting: Callable[[str], bool] | None = None
        """Peers for which this says True are not offered as workers (flap damping)."""

    def __len__(self) -> int:
        return len(self._peers)

    def __iter__(self) -> Iterator[Peer]:
        return iter(list(self._peers.values()))

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def upsert(self, peer_id: str, key: str, source: str, **fields: Any) -> tuple[Peer, bool]:
        """Add or update a peer; returns it and whether it is new."""
        now = self.clock()
        peer = self._peers.get(peer_id)
        created = peer is None
        if peer is None:
            peer = Peer(peer_id=peer_id, key=key, source=source, first_seen=now, last_seen=now)
            self._peers[peer_id] = peer
        for name, value in fields.items():
            if value is not None:
                setattr(peer, name, value)
        return peer, created

    def heard(self, peer_id: str) -> Transition | None:
        """Any message from the peer refreshes it; an evasive peer becomes alive again."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return None
        peer.last_seen = self.clock()
        if peer.state is PeerState.EVASIVE:
            peer.state = PeerState.ALIVE
            return Transition(peer, PeerState.ALIVE)
        return None

    def remove(self, peer_id: str) -> Peer | None:
        peer = self._peers.pop(peer_id, None)
        if peer is not None:
            peer.state = PeerState.EXPIRED
        return peer

    def tick(self) -> list[Transition]:
        """Advance liveness; expired peers are removed and returned."""
        now = self.clock()
        changes: list[Transition] = []
        for peer in list(self._peers.values()):
            silent = now - peer.last_seen
            if silent > self.expired_after:
                del self._peers[peer.peer_id]
                peer.state = PeerState.EXPIRED
                changes.append(Transition(peer, PeerState.EXPIRED))
            elif silent > self.evasive_after and peer.state is PeerState.ALIVE:
                peer.state = PeerState.EVASIVE
                changes.append(Transition(peer, PeerState.EVASIVE))
        return changes

    def due_for_ping(
        self, only: Callable[[Peer], bool] | None = None, slack: float = 0.0
    ) -> list[Peer]:
        """Peers not heard from (nor pinged) for ``ping_interval``, among those ``only``
        accepts. ``slack`` shortens the interval a little, for callers that look on a beat:
        a peer heard just after the last beat is due on this one, not on the next."""
        now = self.clock()
        interval = self.ping_interval - slack
        due = []
        for peer in self._peers.values():
            if (
                now - peer.last_seen >= interval
                and now - peer.last_ping >= interval
                and (only is None or only(peer))
            ):
                peer.last_ping = now
                due.append(peer)
        return due

    def workers(self, kind: str = "infer") -> list[Peer]:
        """Greeted, alive peers that execute ``kind``."""
        resting = self.resting
        return [
            p
            for p in self._peers.values()
            if p.greeted
            and p.state is PeerState.ALIVE
            and kind in p.caps
            and (resting is None or not resting(p.peer_id))
        ]
