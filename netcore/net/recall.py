"""Peers that went silent, not away: remembered and probed so they return when a link heals,
and flap damping for peers whose link keeps breaking. Pure logic with an injected clock.

A peer that *left* (``bye``, a confirmed mDNS goodbye) is forgotten at once. A peer that *expired* was
cut off: a partition, a sleeping laptop, a cable. mDNS will not announce it again (its records
are still cached), so without help it would stay gone after the link heals. The node keeps its
DEALER (ZeroMQ keeps reconnecting) and pings it with backoff; the first answer, or a completed
handshake, restores it under the same id.

Damping follows route-flap damping (RFC 2439): each loss of a peer adds a penalty that decays
exponentially; above ``suppress_at`` the peer is not used as a worker until the penalty has
decayed below ``reuse_at``. A peer that drops once is never damped; one that drops and returns
every few seconds is rested for a while instead of being re-added and dropped each time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netcore.net.peers import Peer


@dataclass(slots=True)
class _Remembered:
    peer: Peer
    since: float
    next_probe: float
    interval: float


@dataclass
class Recall:
    """Expired peers kept for probing; bounded in count and time."""

    forget_after: float = 600.0
    first_probe: float = 1.0
    max_probe_interval: float = 30.0
    capacity: int = 256
    clock: Callable[[], float] = time.monotonic
    _peers: dict[str, _Remembered] = field(default_factory=dict)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def __len__(self) -> int:
        return len(self._peers)

    def remember(self, peer: Peer) -> list[str]:
        """Keep an expired peer; returns ids dropped to stay within ``capacity``."""
        now = self.clock()
        self._peers[peer.peer_id] = _Remembered(peer, now, now + self.first_probe, self.first_probe)
        dropped = []
        while len(self._peers) > self.capacity:
            oldest = min(self._peers.values(), key=lambda r: r.since)
            del self._peers[oldest.peer.peer_id]
            dropped.append(oldest.peer.peer_id)
        return dropped

    def recall(self, peer_id: str) -> Peer | None:
        """Take a peer back out (it answered); None if it was not remembered."""
        entry = self._peers.pop(peer_id, None)
        return entry.peer if entry is not None else None

    def forget(self, peer_id: str) -> bool:
        return self._peers.pop(peer_id, None) is not None

    def due(self) -> tuple[list[str], list[str]]:
        """(ids to probe now, ids forgotten now); probe intervals double up to the maximum."""
        now = self.clock()
        probe, forgotten = [], []
        for peer_id, entry in list(self._peers.items()):
            if now - entry.since > self.forget_after:
                del self._peers[peer_id]
                forgotten.append(peer_id)
            elif now >= entry.next_probe:
                probe.append(peer_id)
                entry.interval = min(entry.interval * 2, self.max_probe_interval)
                entry.next_probe = now + entry.interval
        return probe, forgotten


@dataclass
class FlapDamper:
    """Route-flap damping per peer id."""

    penalty_per_flap: float = 1000.0
    suppress_at: float = 2500.0
    reuse_at: float = 800.0
    half_life: float = 30.0
    max_suppress: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _state: dict[str, tuple[float, float]] = field(default_factory=dict)
    """peer_id -> (penalty, time it was computed)."""
    _suppressed: set[str] = field(default_factory=set)

    def _penalty(self, peer_id: str, now: float) -> float:
        penalty, at = self._state.get(peer_id, (0.0, now))
        return penalty * math.pow(0.5, (now - at) / self.half_life)

    def flap(self, peer_id: str) -> float | None:
        """Record a loss; returns seconds of suppression when this flap starts one, else None."""
        now = self.clock()
        penalty = min(self._penalty(peer_id, now) + self.penalty_per_flap, self._ceiling())
        self._state[peer_id] = (penalty, now)
        if penalty >= self.suppress_at and peer_id not in self._suppressed:
            self._suppressed.add(peer_id)
            return self.half_life * math.log2(penalty / self.reuse_at)
        return None

    def _ceiling(self) -> float:
        # The penalty at which decay to reuse_at takes max_suppress: suppression stays bounded.
        return self.reuse_at * math.pow(2, self.max_suppress / self.half_life)

    def suppressed(self, peer_id: str) -> bool:
        if peer_id not in self._suppressed:
            return False
        now = self.clock()
        if self._penalty(peer_id, now) < self.reuse_at:
            self._suppressed.discard(peer_id)
            self._state.pop(peer_id, None)
            return False
        return True
