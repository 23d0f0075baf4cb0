"""Membership: which peers this node knows, how it reaches them, and when they leave.

The peer table's life cycle, driven by what discovery, the transport and peers' hellos
report: a peer found (mDNS, static, shared, or its own ``hello``) is dialled and greeted;
it is announced once greeted; silence makes it evasive, then expired (its link kept and
probed, :mod:`netcore.net.recall`); ``bye``, a revoked key, or an mDNS goodbye confirmed by
missed pings (:mod:`netcore.net.hints`) drop it. Every dial is bounded
(:mod:`netcore.net.dialling`). Pings
go out on a shared beat (PROTOCOL.md §5). The node's work layers hear of it through
callbacks: ``on_peer_lost`` (a worker gone: its tasks go elsewhere) and ``on_changed``.
Messages on the links are read by :class:`netcore.net.session.Session`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from netcore.config.settings import Config
from netcore.net.dialling import Dialling
from netcore.net.discovery import DiscoveredPeer
from netcore.net.hints import REJOIN_QUIET_S, MdnsHints
from netcore.net.identity import Identity
from netcore.net.peers import THROUGH_RELAY, Peer, PeerState, PeerTable, Transition
from netcore.net.punching import Punching
from netcore.net.reach import PeerReach
from netcore.net.recall import FlapDamper, Recall
from netcore.net.relaying import Relaying
from netcore.net.transport import Transport
from netcore.observe.events import Event, PeerAlive, PeerDown, PeerEvasive, PeerUp
from netcore.wire import protocol
from netcore.wire.addresses import endpoint_ip, peer_id_for, subnets

log = logging.getLogger("p2pai.node")

TICK_S = 0.25
CONNECT_BACK_DELAY_S = 0.05
MAX_CONNECTIONS_TRACKED = 4096
PLANNED_CUT_S = 5.0


class Gatekeeper(Protocol):
    """The trust decisions membership and sessions ask for (:class:`netcore.trust.manager.TrustManager`)."""

    def on_discovered(self, key: str) -> bool: ...
    def may_dial(self, peer: Peer) -> bool: ...
    def on_frame(self, rid: bytes, key: str, frames: list[Any]) -> bool: ...
    def deliverable(self, rid: bytes, peer_id: str) -> bool: ...
    def check_hello(self, rid: bytes, key: str, msg: Mapping[str, Any]) -> str | None: ...


class Membership:
    """The peers of one node and the links to them (all on the node's loop)."""

    def __init__(
        self,
        config: Config,
        peers: PeerTable,
        trust: Gatekeeper,
        publish: Callable[[Event], None],
        counters: dict[str, int],
        hello_fields: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.config = config
        self.peers = peers
        self.trust = trust
        self.publish = publish
        self.counters = counters
        self.hello_fields = hello_fields
        """The node's part of our hello: models, accel, capacity."""
        self.on_peer_lost: Callable[[str, str], None] = lambda peer_id, reason: None
        """Told when a peer left or its link dropped (the scheduler re-sends its tasks)."""
        self.on_changed: Callable[[], None] = lambda: None
        """Told when the set of usable peers may have changed."""
        self.transport: Transport | None = None
        self.identity: Identity | None = None
        self.endpoints: list[str] = []
        self.addresses: list[str] = []
        self.stopping = False
        self.departed: dict[str, float] = {}
        """Peers that said bye (or goodbye), and when: their mDNS echoes are ignored a while."""
        self.hello_ids: dict[bytes, str] = {}
        """Ids of the hellos we sent, by peer: an error answering one is a refused hello."""
        self.pings: dict[bytes, asyncio.Future[float]] = {}
        self._key_ids: dict[str, str] = {}
        self._greet_early: set[str] = set()
        """Peers whose new DEALER has a hello queued from connect time (connect)."""
        self._connect_back: set[str] = set()
        """Peers that greeted us, to dial back together (connect_soon)."""
        self._connect_back_handle: asyncio.TimerHandle | None = None
        self.recall = Recall()
        """Expired peers probed so that they return when their link heals (netcore.net.recall)."""
        self.damper = FlapDamper()
        self.peers.resting = self.damper.suppressed
        self.reach = PeerReach(self)
        """Static peers and peer sharing (:mod:`netcore.net.reach`)."""
        self.dialling = Dialling(self)
        """Every endpoint dialled is a candidate, bounded (:mod:`netcore.net.dialling`)."""
        self.relaying = Relaying(self)
        """Reservations at relays and the peers they list (:mod:`netcore.net.relaying`)."""
        self.punching = Punching(self)
        """Direct links to relayed peers through both NATs (:mod:`netcore.net.punching`)."""
        self.planned_cut: dict[str, float] = {}
        """Peers whose link we closed on purpose to move it (a punched path), and when: a
        disconnect within PLANNED_CUT_S of that is no flap."""
        self.hints = MdnsHints(self)
        """mDNS records: hints to dial and to ping, never liveness (:mod:`netcore.net.hints`)."""

    def stop(self) -> None:
        """No more dialling or requests: we are leaving."""
        self.stopping = True
        if self._connect_back_handle is not None:
            self._connect_back_handle.cancel()
            self._connect_back_handle = None

    async def ping(self, peer_id: str, timeout: float = 1.0) -> float | None:
        """Round trip to ``peer_id`` in seconds, or ``None`` if it did not answer in time."""
        rid = protocol.new_id()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.pings[rid] = fut
        sent_at = time.monotonic()
        try:
            if not self.send_request(peer_id, {"t": "ping", "id": rid, "ts": sent_at}):
                return None
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            self.pings.pop(rid, None)

    def changed(self) -> None:
        self.on_changed()

    def peer_id_of(self, key: str) -> str:
        peer_id = self._key_ids.get(key)
        if peer_id is None:
            peer_id = peer_id_for(key)
            if len(self._key_ids) > MAX_CONNECTIONS_TRACKED:
                self._key_ids.clear()
            self._key_ids[key] = peer_id
        return peer_id

    def on_discovered(self, found: DiscoveredPeer) -> None:
        self.hints.on_record(found)

    def on_discovery_gone(self, peer_id: str) -> None:
        self.hints.on_record_gone(peer_id)

    def connect(self, peer: Peer, voucher: str | None = None) -> None:
        """Propose ``peer``'s endpoint for a dial; ``voucher`` is who names it (the peer
        itself by default: its hello; see :mod:`netcore.net.dialer`)."""
        if self.transport is None or not (peer.endpoints or peer.reach in THROUGH_RELAY):
            return
        if not self.trust.may_dial(peer):
            return
        self.dialling.propose(peer, voucher or peer.peer_id)

    def pick_endpoint(self, endpoints: list[str]) -> str | None:
        """The first advertised endpoint on a subnet we serve on, else the first valid one."""
        ours = subnets(tuple(self.addresses))
        valid = []
        for endpoint in endpoints:
            ip = endpoint_ip(endpoint)
            if ip is None:
                continue
            if any(ip in net for net in ours):
                return endpoint
            valid.append(endpoint)
        return valid[0] if valid else None

    def drop_peer(self, peer_id: str, reason: str) -> None:
        self.recall.forget(peer_id)  # it left: nothing to wait for
        peer = self.peers.remove(peer_id)
        self.departed[peer_id] = time.monotonic()
        self.dialling.close(peer_id)
        self.dialling.gone(peer_id, keep=False)
        self.hints.suspects.pop(peer_id, None)
        self.on_peer_lost(peer_id, reason)
        if peer is not None and peer.announced:
            log.info("peer %s (%s) left: %s", peer_id, peer.name, reason)
            self.publish(PeerDown(peer_id=peer_id, reason=reason))
        self.changed()

    def announce(self, peer: Peer) -> None:
        if not peer.announced:
            peer.announced = True
            where = peer.endpoint or "-"
            if peer.reach in THROUGH_RELAY:  # (a peer that came in through one: which, unknown)
                where = f"relay {peer.relay}" if peer.relay else "a relay"
            log.info("peer %s (%s) up at %s", peer.peer_id, peer.name, where)
            self.publish(
                PeerUp(
                    peer_id=peer.peer_id,
                    name=peer.name,
                    endpoint=peer.endpoint,
                    source=peer.source,
                    reach=peer.reach,
                    relay=peer.relay,
                )
            )

    def heard(self, peer_id: str) -> None:
        change = self.peers.heard(peer_id)
        if change is not None:
            self._publish_transition(change)

    def _publish_transition(self, change: Transition) -> None:
        peer = change.peer
        if change.state is PeerState.ALIVE:
            log.info("peer %s is back", peer.peer_id)
            self.publish(PeerAlive(peer_id=peer.peer_id))
            self.changed()
        elif change.state is PeerState.EVASIVE:
            log.warning(
                "peer %s is evasive (silent for %.1fs)", peer.peer_id, self.config.evasive_after
            )
            self.publish(PeerEvasive(peer_id=peer.peer_id))
            self.flapped(peer)
        elif change.state is PeerState.EXPIRED:
            self.peers.remove(peer.peer_id)
            self.departed.pop(peer.peer_id, None)
            self._drop_peer_expired(peer)

    def flapped(self, peer: Peer) -> None:
        rest = self.damper.flap(peer.peer_id)
        if rest is not None:
            log.warning(
                "peer %s (%s) keeps dropping out; not used for about %.0fs",
                peer.peer_id,
                peer.name,
                rest,
            )

    def _drop_peer_expired(self, peer: Peer) -> None:
        if self.transport is not None:
            link = self.transport.links.get(peer.peer_id)
            if peer.endpoints and link is not None and link.verified and not self.stopping:
                # Cut off, not gone: keep the DEALER and probe it (netcore.net.recall). Only
                # a link whose handshake completed: an endpoint that never answered as this
                # peer is hearsay, not a peer to wait for.
                for dropped in self.recall.remember(peer):
                    self.dialling.forget(dropped)
                self.dialling.gone(peer.peer_id, keep=True)
            else:
                self.dialling.forget(peer.peer_id)
                self.dialling.gone(peer.peer_id, keep=False)
        self.hints.suspects.pop(peer.peer_id, None)
        self.on_peer_lost(peer.peer_id, "expired")
        if peer.announced:
            log.warning("peer %s (%s) expired", peer.peer_id, peer.name)
            self.publish(PeerDown(peer_id=peer.peer_id, reason="expired"))
        self.changed()

    async def ping_loop(self) -> None:
        """Pings on a shared beat (PROTOCOL.md §5: ping a peer not heard from for 1 s).

        Beats fall every half ``ping_interval`` of wall-clock time. On whole beats a node
        pings the silent peers whose id is above its own; on half beats, those below. The
        two ends of a pair never look on the same beat, so one of them pings and the other
        hears it and need not (one ping per pair and interval, as before), and the pings of
        the whole swarm go out on the same instants: a node wakes a few times a second for
        all of them instead of once per peer (each wake-up of an idle process costs ~0.1 ms
        here). A peer silent for the interval (less a tenth, the slack of the beat) is
        pinged on its next beat; if the end that pinged is gone, the other pings half an
        interval later. Clocks need not agree: only the batching depends on them.
        """
        assert self.transport is not None and self.identity is not None
        me = self.identity.peer_id
        while True:
            half = self.config.ping_interval / 2
            await asyncio.sleep(half - time.time() % half + 0.001)
            upper = round(time.time() / half) % 2 == 0  # whole beat: ping ids above ours

            def on_this_beat(peer: Peer, upper: bool = upper) -> bool:
                return (peer.peer_id > me) == upper

            for peer in self.peers.due_for_ping(only=on_this_beat, slack=half / 5):
                if peer.peer_id in self.transport.links:
                    self.counters["pings_sent"] += 1
                    self.send_request(
                        peer.peer_id,
                        {"t": "ping", "id": protocol.new_id(), "ts": time.monotonic()},
                    )

    def first_ping(self, peer: Peer) -> None:
        """Ping a peer that just answered our hello, so its round trip is known at once.

        The beat in :meth:`ping_loop` pings only silent peers, and of a pair only one end:
        without this a new peer showed no RTT for seconds (or, on the end that is pinged,
        until its first task came back)."""
        if peer.rtt is None and self.transport is not None and peer.peer_id in self.transport.links:
            self.counters["pings_sent"] += 1
            self.send_request(
                peer.peer_id, {"t": "ping", "id": protocol.new_id(), "ts": time.monotonic()}
            )

    async def tick_loop(self) -> None:
        assert self.transport is not None
        while True:
            await asyncio.sleep(TICK_S)
            for change in self.peers.tick():
                self._publish_transition(change)
            probe, forgotten = self.recall.due()
            for peer_id in probe:
                self.send_request(
                    peer_id, {"t": "ping", "id": protocol.new_id(), "ts": time.monotonic()}
                )
            for peer_id in forgotten:
                self.dialling.forget(peer_id)
            self.dialling.tick()
            self.punching.tick()
            self.hints.tick()
            now = time.monotonic()
            for peer_id, at in list(self.departed.items()):
                if now - at > REJOIN_QUIET_S:
                    del self.departed[peer_id]

    def hello(self, rid: bytes) -> dict[str, Any]:
        cfg = self.config
        return {
            "t": "hello",
            "id": rid,
            "name": cfg.name,
            "net": cfg.network,
            "caps": list(cfg.caps),
            "endpoints": self.endpoints if cfg.caps else [],
            **self.hello_fields(),  # models, accel, capacity: the node's (Node._hello_fields)
            **self.reach.hello_fields(),
            **self.punching.hello_fields(),
        }

    def readvertise(self, _spec: object = None) -> None:
        """Greet every connected peer again, so they learn of a model fetched meanwhile."""
        if self.transport is not None and not self.stopping:
            for peer_id in list(self.transport.links):
                self.on_link(peer_id, True)

    def send_request(self, peer_id: str, msg: Mapping[str, Any]) -> bool:
        assert self.transport is not None
        if self.stopping:
            # After our bye, a ping (answered hello_required) or a late hello would make the
            # peer greet us again: a ghost that lingers until it expires.
            return False
        return self.transport.send(peer_id, protocol.encode(msg))

    def restore(self, peer_id: str) -> Peer | None:
        """A remembered (expired) peer answered again: back in the table under its id."""
        old = self.recall.recall(peer_id)
        if old is None or self.stopping:
            return None
        peer, _ = self.peers.upsert(
            peer_id,
            old.key,
            old.source,
            name=old.name,
            endpoints=old.endpoints,
            caps=old.caps,
            models=old.models,
            capacity=old.capacity,
            accel=old.accel,
            in_mdns=old.in_mdns,
        )
        self.dialling.recalled(peer_id)
        log.info("peer %s (%s) is reachable again", peer_id, peer.name)
        return peer

    def on_link_event(self, peer_id: str, up: bool) -> None:
        """The transport's report: a DEALER's handshake succeeded (``up``) or it dropped."""
        if up:
            self.dialling.verified(peer_id)
        if peer_id in self._greet_early:
            self._greet_early.discard(peer_id)
            if up:
                return  # the hello queued at connect time went out on this connection
        self.on_link(peer_id, up)

    def greet(self, peer_id: str) -> None:
        rid = protocol.new_id()
        self.hello_ids[rid] = peer_id
        if len(self.hello_ids) > MAX_CONNECTIONS_TRACKED:
            self.hello_ids.pop(next(iter(self.hello_ids)))
        self.send_request(peer_id, self.hello(rid))

    def on_link(self, peer_id: str, up: bool) -> None:
        peer = self.peers.get(peer_id)
        if peer is None and up:
            peer = self.restore(peer_id)
        if peer is None:
            return
        if up:
            self.greet(peer_id)
        else:
            peer.greeted = False
            if time.monotonic() - self.planned_cut.pop(peer_id, -PLANNED_CUT_S) >= PLANNED_CUT_S:
                self.flapped(peer)
            self.on_peer_lost(peer_id, "disconnected")

    def connect_soon(self, peer_id: str) -> None:
        """Dial back a peer that greeted us, CONNECT_BACK_DELAY_S from now, with the others
        that greet us meanwhile.

        When a node joins, every running node connects to it at once; answering their
        handshakes and hellos first, and opening our own connections to them a moment later,
        halves the work the join has to wait on (each pair's two CURVE handshakes share one
        ZeroMQ I/O thread here). Until then we answer their requests but send none."""
        self._connect_back.add(peer_id)
        if self._connect_back_handle is None:
            self._connect_back_handle = asyncio.get_running_loop().call_later(
                CONNECT_BACK_DELAY_S, self._connect_back_now
            )

    def _connect_back_now(self) -> None:
        self._connect_back_handle = None
        pending, self._connect_back = self._connect_back, set()
        if self.stopping:
            return
        for peer_id in pending:
            peer = self.peers.get(peer_id)
            if peer is not None:
                self.connect(peer)
