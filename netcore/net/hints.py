"""mDNS records as hints, never as liveness or identity (docs/protocol.md, "Liveness").

Anyone on the LAN can send an mDNS packet: a goodbye (TTL 0) for a live peer's records, or a
TXT record with that peer's key and another name or capabilities. So:

* a record for a peer we do not know proposes an endpoint and the key to expect there: a
  dial (bounded, :mod:`netcore.net.dialling`) whose CURVE handshake proves it. Name and
  capabilities wait for the peer's authenticated ``hello``;
* a record for a peer we know changes nothing; if it differs from what the peer's hello
  said, it triggers one ping (at most one per ping interval);
* a goodbye, or a record that is gone, for a peer whose DEALER is up makes it a *suspect*:
  pinged at once and every ping interval; it is dropped (reason ``goodbye``) only if nothing
  at all is heard from it over CURVE for ``evasive_after``. A peer that answers stays, and a
  peer that really leaves says ``bye`` over CURVE first. A peer never authenticated just
  loses the record's word for its endpoint.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from netcore.net.dialer import MDNS
from netcore.net.discovery import DiscoveredPeer
from netcore.net.peers import Peer
from netcore.wire import protocol

if TYPE_CHECKING:
    from netcore.net.membership import Membership

REJOIN_QUIET_S = 2.0
"""After a ``bye`` or goodbye, mDNS sightings of that peer are ignored this long (no ghosts)."""


class MdnsHints:
    """Owned by a node's :class:`~netcore.net.membership.Membership`; runs on the node's loop."""

    def __init__(self, membership: Membership) -> None:
        self.m = membership
        self.suspects: dict[str, tuple[float, float]] = {}
        """peer id -> (when its record went, when we last pinged it)."""
        self._pinged: dict[str, float] = {}
        """peer id -> when a changed record last made us ping it."""
        self.counters = {"goodbyes_probed": 0, "goodbyes_confirmed": 0, "records_ignored": 0}

    def on_record(self, found: DiscoveredPeer) -> None:
        """A record (new or changed) of a peer of our swarm, already checked by discovery."""
        m = self.m
        if m.stopping or not m.trust.on_discovered(found.key):
            return
        departed = m.departed.get(found.peer_id)
        if departed is not None and time.monotonic() - departed < REJOIN_QUIET_S:
            return
        peer = m.peers.get(found.peer_id)
        if peer is not None:
            self._known(peer, found)
            return
        peer, _ = m.peers.upsert(found.peer_id, found.key, "mdns")
        peer.mdns_name = found.name
        peer.in_mdns = True
        peer.endpoints = list(found.endpoints)
        if m.recall.forget(found.peer_id) and m.transport and found.peer_id in m.transport.links:
            m.dialling.recalled(found.peer_id)
            m.on_link(found.peer_id, True)  # its kept link is up already: greet it
        m.connect(peer, MDNS)

    def _known(self, peer: Peer, found: DiscoveredPeer) -> None:
        m = self.m
        peer.in_mdns = True
        if not peer.endpoints:
            peer.endpoints = list(found.endpoints)
        if not peer.greeted:
            m.connect(peer, MDNS)  # a hint to dial, bounded like any other
            return
        cand = m.dialling.dialer.get(peer.peer_id)
        if cand is not None:
            cand.vouchers.add(MDNS)
        if (
            found.name != peer.name
            or sorted(found.caps) != sorted(peer.caps)
            or not set(found.endpoints) & set(peer.endpoints)
        ):
            self.counters["records_ignored"] += 1
            now = time.monotonic()
            if now - self._pinged.get(peer.peer_id, 0.0) >= m.config.ping_interval:
                self._pinged[peer.peer_id] = now
                if len(self._pinged) > 4096:
                    self._pinged.pop(next(iter(self._pinged)))
                self._ping(peer.peer_id)

    def on_record_gone(self, peer_id: str) -> None:
        """A goodbye, or the record expired from the cache."""
        m = self.m
        peer = m.peers.get(peer_id)
        if peer is None or not (peer.greeted or peer.announced):
            m.dialling.unvouch(peer_id, MDNS)
            return
        if m.transport is None or peer_id not in m.transport.links:
            return  # no link to ask on (a client-only peer): its silence decides, as ever
        if peer_id not in self.suspects:
            self.counters["goodbyes_probed"] += 1
            now = time.monotonic()
            self.suspects[peer_id] = (now, now)
            self._ping(peer_id)

    def tick(self) -> None:
        """Suspects heard from since are cleared; those silent for ``evasive_after`` are
        dropped; the others are pinged again each ping interval."""
        m = self.m
        now = time.monotonic()
        for peer_id, (since, pinged) in list(self.suspects.items()):
            peer = m.peers.get(peer_id)
            if peer is None:
                del self.suspects[peer_id]
            elif peer.last_seen > since:
                del self.suspects[peer_id]  # it answered over CURVE: the goodbye was not its
            elif now - since >= m.config.evasive_after:
                del self.suspects[peer_id]
                self.counters["goodbyes_confirmed"] += 1
                m.drop_peer(peer_id, "goodbye")
            elif now - pinged >= m.config.ping_interval:
                self.suspects[peer_id] = (since, now)
                self._ping(peer_id)

    def _ping(self, peer_id: str) -> None:
        m = self.m
        m.counters["pings_sent"] += 1
        m.send_request(peer_id, {"t": "ping", "id": protocol.new_id(), "ts": time.monotonic()})
