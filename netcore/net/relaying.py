"""The node's side of relays (``--relay tcp://host:port#KEY``, repeatable): a reservation at
each (:class:`netcore.net.relay_client.RelayClient`), and the peers their registries list,
dialled through them.

A peer a relay lists is a candidate like any other (:mod:`netcore.net.dialer`): the relay
vouches for it (voucher ``relay:<address>``) while it lists it, every dial is bounded, and
the trust policy decides before each dial (``Membership.connect``). Its endpoint is the
local end of a circuit through that relay (``tcp://127.0.0.1:<port>``), so our DEALER's
CURVE handshake proves the peer's key end to end: the relay passes on only keys that hold a
reservation (proven by their own CURVE handshake with it), and cannot pose as any of them.

A peer we already reach directly (a verified link not through a relay, or one mDNS found)
is left alone; a relayed one is not re-pointed at the direct endpoints of its ``hello``
(behind a NAT they do not answer). Each peer's :attr:`~netcore.net.peers.Peer.reach` says
which (``direct`` or ``relayed``).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import zmq

from netcore.config.errors import ConfigError
from netcore.config.peers import parse_relay
from netcore.net.peers import PUNCHED, RELAYED, THROUGH_RELAY, Peer
from netcore.net.relay_client import RelayClient
from netcore.wire.addresses import peer_id_for

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from netcore.net.membership import Membership
    from netcore.net.transport import Transport

log = logging.getLogger("p2pai.relay")

VOUCHER = "relay:"


class Relaying:
    """Owned by a node's :class:`~netcore.net.membership.Membership`; runs on the node's loop."""

    def __init__(self, membership: Membership) -> None:
        self.m = membership
        self.addresses = []
        for text in membership.config.relays:
            with contextlib.suppress(ConfigError):  # Config.validate reports a bad one at start
                self.addresses.append(parse_relay(text))
        self.clients: list[RelayClient] = []
        self.routes: dict[str, RelayClient] = {}
        """Peer id -> the relay we dial it through."""
        self.keys: dict[str, str] = {}
        """Peer id -> its key, for the routes."""
        self.listed: dict[str, dict[str, str]] = {}
        """Relay address -> {peer id: key} of its last registry."""
        self.incoming: dict[str, int] = {}
        """Keys that reach us through a relay now (open incoming circuits)."""
        self._ctx: zmq.Context[Any] | None = None

    def start(self, transport: Transport) -> list[Coroutine[Any, Any, None]]:
        """Open the control links; the loops to run (the node spawns them)."""
        m = self.m
        assert m.identity is not None
        if not self.addresses:
            return []
        self._ctx = zmq.Context.shadow(transport.ctx.underlying)
        own = m.identity.public_text
        for relay in self.addresses:
            if relay.key == own:
                log.warning("--relay %s is this node's own key: ignored", relay.text)
                continue
            client = RelayClient(
                relay,
                m.identity,
                self._ctx,
                self._reserve_fields,
                lambda: m.endpoints[0] if m.endpoints else "",
                self.on_peers,
                self.incoming,
                self.on_lost,
            )
            client.start()
            self.clients.append(client)
        return [client.run() for client in self.clients]

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()

    def _reserve_fields(self) -> dict[str, Any]:
        cfg = self.m.config
        return {"net": cfg.network, "name": cfg.name, "caps": list(cfg.caps)}

    # --- the registries ------------------------------------------------------------------

    def on_peers(self, client: RelayClient, entries: list[dict[str, Any]]) -> None:
        """``client``'s relay listed these reserved nodes of our network."""
        m = self.m
        if m.stopping or m.identity is None:
            return
        me = m.identity.peer_id
        listed: dict[str, str] = {}
        names: dict[str, str] = {}
        for entry in entries:
            if not entry["caps"]:
                continue  # a client-only node: it reaches us, we have nothing to ask of it
            pid = peer_id_for(entry["key"])
            if pid != me:
                listed[pid], names[pid] = entry["key"], entry["name"]
        voucher = VOUCHER + client.address
        old = self.listed.get(client.address, {})
        self.listed[client.address] = listed
        for pid in old.keys() - listed.keys():
            m.dialling.unvouch(pid, voucher)
        for pid, key in listed.items():
            peer = m.peers.get(pid)
            if pid in m.departed or (peer is not None and self.direct(peer)):
                continue
            self.keys[pid] = key
            current = self.routes.get(pid)
            if current is not None and current.carries_direct(key):
                continue  # our link to it is punched, on the route it has
            if current is None or (current.state != "reserved" and current is not client):
                if current is not None:
                    current.drop_endpoint(key)
                self.routes[pid] = client
            if peer is None:
                peer, created = m.peers.upsert(pid, key, "relay")
                if created:
                    peer.mdns_name = names[pid][:63]  # unauthenticated: for messages only
            peer.relay = self.routes[pid].relay.endpoint
            self.update_reach(peer)
            m.connect(peer, voucher)

    def on_lost(self, client: RelayClient) -> None:
        """``client``'s control link dropped: each relayed peer it routes goes through another
        relay that lists it, now (not when the reservations expire). Punched links stay: the
        relay is only their fallback."""
        for pid, route in list(self.routes.items()):
            if route is client:
                self._reroute(pid)

    def route_ended(self, peer_id: str) -> None:
        """A punched link ended: say how we reach the peer now, and if its relay is gone
        meanwhile, move to another."""
        peer = self.m.peers.get(peer_id)
        if peer is not None:
            self.update_reach(peer)
        client = self.routes.get(peer_id)
        if client is not None and not client.linked:
            self._reroute(peer_id)

    def _reroute(self, peer_id: str) -> None:
        m, current = self.m, self.routes.get(peer_id)
        peer, key = m.peers.get(peer_id), self.keys.get(peer_id)
        if current is None or peer is None or key is None or m.stopping:
            return
        if current.carries_direct(key):
            return  # punched: the relay was only its fallback
        for other in self.clients:
            if other is current or other.state != "reserved" or not other.linked:
                continue
            if peer_id not in self.listed.get(other.address, {}):
                continue
            current.drop_endpoint(key)
            self.routes[peer_id] = other
            peer.relay = other.relay.endpoint
            log.info(
                "peer %s (%s): relay %s lost, through relay %s now",
                peer_id, peer.name, current.relay.endpoint, other.relay.endpoint,
            )  # fmt: skip
            if m.trust.may_dial(peer):
                m.dialling.repoint(peer, VOUCHER + other.address)
            return

    def reach_of(self, peer: Peer) -> str | None:
        """How we reach ``peer`` through relays now: ``punched`` (our DEALER's link to it is
        on a punched connection, or its link to us), ``relayed``, or None (not through a
        relay at all: its reach is left as it is)."""
        if self.direct(peer):
            return None
        client = self.routes.get(peer.peer_id)
        if (client is not None and client.carries_direct(peer.key)) or self.m.punching.inbound(
            peer.key
        ):
            return PUNCHED
        if client is not None or self.inbound(peer.key):
            return RELAYED
        return None

    def update_reach(self, peer: Peer) -> None:
        reach = self.reach_of(peer)
        if reach is not None:
            self.m.punching.set_reach(peer, reach)

    def direct(self, peer: Peer) -> bool:
        """We reach ``peer`` without a relay: mDNS found it, or a link not through a relay
        completed its handshake."""
        if peer.in_mdns:
            return True
        transport = self.m.transport
        link = transport.links.get(peer.peer_id) if transport is not None else None
        return link is not None and link.verified and not link.via

    # --- dialling ------------------------------------------------------------------------

    def route(self, peer: Peer) -> str | None:
        """The local endpoint that reaches ``peer`` through its relay, if it has one."""
        client = self.routes.get(peer.peer_id)
        if client is None or client not in self.clients:
            return None
        return client.local_endpoint(peer.key)

    def via(self, peer_id: str, endpoint: str) -> str:
        """The relay a dial of ``endpoint`` goes through, or ``""`` (a direct dial)."""
        client = self.routes.get(peer_id)
        peer = self.m.peers.get(peer_id)
        if client is None or peer is None or peer.reach not in THROUGH_RELAY:
            return ""
        return client.address if client.local_endpoint(peer.key) == endpoint else ""

    def forget(self, peer_id: str) -> None:
        """No dial to ``peer_id`` any more: close its local listener."""
        client = self.routes.pop(peer_id, None)
        key = self.keys.pop(peer_id, None)
        if client is not None and key is not None:
            client.drop_endpoint(key)

    def inbound(self, key: str) -> bool:
        """``key`` reaches us through a relay now."""
        return key in self.incoming

    def status(self) -> list[dict[str, Any]]:
        return [client.status() for client in self.clients]
