"""Bounded dialling: every endpoint this node would open a DEALER to is a *candidate*.

An endpoint is hearsay until a CURVE handshake with the key announced for it completes: a
peer's own ``hello`` names its endpoints, a ``peers`` list (peer exchange) names others', an
mDNS record proposes one, ``--peer`` gives one by hand. Any of them may point at a machine
that is not a p2pai node (or is another one), and ZeroMQ alone would reconnect to it every
0.1 s for as long as the DEALER lives. So (docs/protocol.md, "Dialling"):

* one dial (a new DEALER, or one re-pointed) per candidate at a time, spaced by a backoff
  that starts at ``first_backoff`` (1 s) and doubles up to ``max_backoff`` (minutes); a
  completed handshake resets it;
* at most ``max_unverified`` dials whose handshake has not completed yet; a dial that has not
  completed within ``dial_timeout`` is closed (and retried later, with the backoff);
* a failed handshake (not a ZMTP/CURVE server, or a server with another key) closes the
  DEALER at once; after ``max_failures`` of them that (peer id, endpoint) is banned for
  ``ban_s``;
* a candidate lives only while something vouches for it: the peer itself while it is live
  (its hello, or a completed handshake), a live peer that shared it, its mDNS record, the
  recall of an expired peer, or ``--peer`` (``static``: never forgotten, never banned).

Pure logic with an injected clock; :class:`netcore.net.membership.Membership` opens and
closes the sockets and reports what the transport saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

STATIC = "static"
MDNS = "mdns"
RECALL = "recall"
MAX_CANDIDATES = 4096
MAX_BANS = 4096


@dataclass(slots=True)
class Candidate:
    peer_id: str
    key: str
    endpoint: str
    """The endpoint we want a DEALER on."""
    vouchers: set[str] = field(default_factory=set)
    dialled: str | None = None
    """The endpoint the DEALER points at now; None: no DEALER."""
    dialled_at: float = 0.0
    verified: bool = False
    """The DEALER's handshake completed (with the announced key) at least once."""
    backoff: float = 1.0
    next_try: float = 0.0
    attempts: int = 0

    @property
    def pinned(self) -> bool:
        return STATIC in self.vouchers


@dataclass(slots=True)
class DialCounters:
    dials: int = 0
    handshake_failures: int = 0
    timeouts: int = 0
    banned: int = 0
    ignored_banned: int = 0
    deferred: int = 0
    forgotten: int = 0


class Dialer:
    """Candidates by peer id: when to dial, when to give up."""

    def __init__(
        self,
        first_backoff: float = 1.0,
        max_backoff: float = 300.0,
        max_failures: int = 3,
        max_unverified: int = 32,
        dial_timeout: float = 10.0,
        ban_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.max_failures = max_failures
        self.max_unverified = max_unverified
        self.dial_timeout = dial_timeout
        self.ban_s = ban_s
        self.clock = clock
        self.candidates: dict[str, Candidate] = {}
        self.failures: dict[tuple[str, str], int] = {}
        """Failed handshakes by (peer id, endpoint), until banned or verified."""
        self.bans: dict[tuple[str, str], float] = {}
        """(peer id, endpoint) -> until when it is not dialled."""
        self.counters = DialCounters()

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self.candidates

    def get(self, peer_id: str) -> Candidate | None:
        return self.candidates.get(peer_id)

    def is_banned(self, peer_id: str, endpoint: str) -> bool:
        until = self.bans.get((peer_id, endpoint))
        if until is None:
            return False
        if until <= self.clock():
            del self.bans[(peer_id, endpoint)]
            return False
        return True

    def unverified(self) -> int:
        """Dials in flight whose handshake has not completed (static ones not counted)."""
        return sum(
            1
            for c in self.candidates.values()
            if c.dialled is not None and not c.verified and not c.pinned
        )

    def propose(self, peer_id: str, key: str, endpoint: str, voucher: str) -> bool:
        """``voucher`` names ``endpoint`` for ``peer_id``; True when it is to be dialled now."""
        if voucher != STATIC and self.is_banned(peer_id, endpoint):
            self.counters.ignored_banned += 1
            return False
        cand = self.candidates.get(peer_id)
        if cand is None:
            if len(self.candidates) >= MAX_CANDIDATES:
                return False
            cand = Candidate(peer_id, key, endpoint, backoff=self.first_backoff)
            cand.next_try = self.clock()
            self.candidates[peer_id] = cand
        cand.vouchers.add(voucher)
        if cand.endpoint != endpoint:
            if cand.verified and cand.dialled == cand.endpoint and voucher != peer_id:
                return False  # only the peer itself re-points a link that works
            cand.endpoint = endpoint
        return self.ready(cand)

    def ready(self, cand: Candidate) -> bool:
        """Is a dial of ``cand`` due now (and within the bound on unverified dials)?"""
        if cand.dialled == cand.endpoint:
            return False
        if self.clock() < cand.next_try:
            self.counters.deferred += 1
            return False
        return cand.pinned or self.unverified() < self.max_unverified

    def due(self) -> list[Candidate]:
        """Candidates whose dial is due now, oldest first, within the bound."""
        now = self.clock()
        room = self.max_unverified - self.unverified()
        found = []
        for cand in sorted(self.candidates.values(), key=lambda c: c.next_try):
            if cand.dialled == cand.endpoint or now < cand.next_try:
                continue
            if not cand.pinned:
                if room <= 0:
                    continue
                room -= 1
            found.append(cand)
        return found

    def dialled(self, peer_id: str) -> None:
        """A DEALER was opened (or re-pointed) to the candidate's endpoint."""
        cand = self.candidates.get(peer_id)
        if cand is None:
            return
        now = self.clock()
        cand.dialled, cand.dialled_at, cand.verified = cand.endpoint, now, False
        cand.attempts += 1
        cand.next_try = now + cand.backoff
        cand.backoff = min(cand.backoff * 2, self.max_backoff)
        self.counters.dials += 1

    def verified_link(self, peer_id: str) -> None:
        """The DEALER's CURVE handshake completed: the endpoint holds the announced key."""
        cand = self.candidates.get(peer_id)
        if cand is None or cand.dialled is None:
            return
        cand.verified = True
        cand.vouchers.add(peer_id)
        cand.backoff = self.first_backoff
        self.failures.pop((peer_id, cand.dialled), None)

    def failed(self, peer_id: str, refused: bool = False) -> bool:
        """A handshake on the candidate's DEALER failed (the caller closes the DEALER).
        True when the candidate is given up (banned; static ones never are). ``refused``:
        the peer's ZAP refused our key (its allowlist): retried with the backoff, never
        banned, so that it connects once its owner trusts us."""
        cand = self.candidates.get(peer_id)
        if cand is None:
            return False
        self.counters.handshake_failures += 1
        endpoint = cand.dialled or cand.endpoint
        cand.dialled, cand.verified = None, False
        if refused:
            return False
        pair = (peer_id, endpoint)
        self.failures[pair] = self.failures.get(pair, 0) + 1
        if len(self.failures) > MAX_BANS:
            self.failures.pop(next(iter(self.failures)))
        if cand.pinned or self.failures[pair] < self.max_failures:
            return False
        del self.failures[pair]
        self.bans[pair] = self.clock() + self.ban_s
        if len(self.bans) > MAX_BANS:
            self.bans.pop(next(iter(self.bans)))
        self.counters.banned += 1
        if cand.endpoint == endpoint:
            self.forget(peer_id)
            return True
        return False

    def closed(self, peer_id: str) -> None:
        """The DEALER was closed by us."""
        cand = self.candidates.get(peer_id)
        if cand is not None:
            cand.dialled, cand.verified = None, False

    def timed_out(self) -> list[str]:
        """Unverified dials older than ``dial_timeout`` (not static): to be closed."""
        now = self.clock()
        late = [
            c.peer_id
            for c in self.candidates.values()
            if c.dialled is not None
            and not c.verified
            and not c.pinned
            and now - c.dialled_at > self.dial_timeout
        ]
        self.counters.timeouts += len(late)
        return late

    def unvouch(self, peer_id: str, voucher: str) -> bool:
        """``voucher`` no longer names ``peer_id``'s endpoint; True when nothing vouches now."""
        cand = self.candidates.get(peer_id)
        if cand is None:
            return False
        cand.vouchers.discard(voucher)
        return not cand.vouchers

    def withdraw(self, voucher: str) -> list[str]:
        """A peer is no longer live: what it vouched for loses it. Returns the candidates
        nothing vouches for any more (the caller forgets them)."""
        orphans = []
        for cand in self.candidates.values():
            if voucher in cand.vouchers:
                cand.vouchers.discard(voucher)
                if not cand.vouchers:
                    orphans.append(cand.peer_id)
        return orphans

    def forget(self, peer_id: str) -> None:
        if self.candidates.pop(peer_id, None) is not None:
            self.counters.forgotten += 1
