"""The node's side of bounded dialling: :class:`netcore.net.dialer.Dialer` decides, this opens
and closes the DEALERs and keeps the peer table in step.

Every DEALER this node opens goes through :meth:`Dialling.propose` (and the re-dials of
:meth:`Dialling.tick`); every DEALER it closes through :meth:`Dialling.close`, so the dialer
always knows which candidates have a socket. A failed handshake closes the DEALER at once
(ZeroMQ would otherwise reconnect every 0.1 s); a candidate nothing vouches for any more is
forgotten, with its socket and, if it never greeted us, its row in the peer table.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from netcore.net.dialer import RECALL, STATIC, Dialer
from netcore.net.peers import THROUGH_RELAY, Peer

if TYPE_CHECKING:
    from netcore.net.membership import Membership

log = logging.getLogger("p2pai.node")


class Dialling:
    """Owned by a node's :class:`~netcore.net.membership.Membership`; runs on the node's loop."""

    def __init__(self, membership: Membership) -> None:
        self.m = membership
        cfg = membership.config
        self.dialer = Dialer(first_backoff=cfg.dial_backoff, max_backoff=cfg.dial_backoff_max)

    def propose(self, peer: Peer, voucher: str) -> None:
        """``voucher`` names ``peer``'s endpoints: dial the best one now, or when due."""
        d = self.dialer
        endpoint: str | None
        if peer.reach in THROUGH_RELAY:
            # Through its relay, never at the endpoints its hello names (behind a NAT).
            endpoint = self.m.relaying.route(peer)
            if endpoint is not None and d.is_banned(peer.peer_id, endpoint):
                endpoint = None
        else:
            usable = [
                e for e in peer.endpoints if voucher == STATIC or not d.is_banned(peer.peer_id, e)
            ]
            endpoint = self.m.pick_endpoint(usable)
        if endpoint is None:
            return
        if d.propose(peer.peer_id, peer.key, endpoint, voucher):
            self._dial(peer.peer_id)

    def repoint(self, peer: Peer, voucher: str) -> None:
        """The path of ``peer``'s link is gone (its relay died): dial its new route now,
        although the old link had worked (which :meth:`propose` alone would keep)."""
        self.dialer.closed(peer.peer_id)
        self.propose(peer, voucher)

    def _dial(self, peer_id: str) -> None:
        m, cand = self.m, self.dialer.get(peer_id)
        if m.transport is None or cand is None or m.stopping:
            return
        via = m.relaying.via(peer_id, cand.endpoint)
        if not m.transport.connect(peer_id, cand.key, cand.endpoint, via=via):
            cand.dialled = cand.endpoint  # the DEALER points there already
            return
        self.dialer.dialled(peer_id)
        # Greet at once: ZeroMQ holds the hello until the handshake completes and sends it
        # from its I/O thread, a loop turn sooner than the handshake event would.
        m._greet_early.add(peer_id)
        m.greet(peer_id)

    def verified(self, peer_id: str) -> None:
        """The DEALER's handshake completed: the key is the announced one. Room for the
        dials waiting on the bound."""
        self.dialer.verified_link(peer_id)
        self.tick(timeouts=False)

    def on_handshake_failed(self, peer_id: str, refused: bool) -> None:
        """Not a p2pai node there, another key, or our key refused: close the DEALER before
        ZeroMQ reconnects; the dialer says when to try again, or that it gave up."""
        m = self.m
        peer = m.peers.get(peer_id)
        gave_up = self.dialer.failed(peer_id, refused)
        self.close(peer_id)
        m._greet_early.discard(peer_id)
        if peer is not None and peer.greeted:
            m.on_link(peer_id, False)
        m.counters["dial_failures"] = m.counters.get("dial_failures", 0) + 1
        if gave_up:
            log.info(
                "not dialling %s at %s again for a while: its handshakes failed",
                peer_id,
                peer.endpoint if peer is not None else "?",
            )
            self._drop_candidate(peer_id)

    def close(self, peer_id: str) -> None:
        if self.m.transport is not None:
            self.m.transport.disconnect(peer_id)
        self.dialer.closed(peer_id)

    def forget(self, peer_id: str) -> None:
        """No dial to this peer any more: its DEALER closed, its candidate gone."""
        self.close(peer_id)
        self.dialer.forget(peer_id)
        self.m.relaying.forget(peer_id)

    def _drop_candidate(self, peer_id: str) -> None:
        """Nothing vouches for this endpoint any more (or it failed): forget it, and the peer
        too if it never greeted us (a shared or mDNS-only entry)."""
        m = self.m
        self.forget(peer_id)
        m.recall.forget(peer_id)
        peer = m.peers.get(peer_id)
        if peer is not None and not peer.announced and not peer.greeted:
            m.peers.remove(peer_id)

    def gone(self, peer_id: str, keep: bool) -> None:
        """``peer_id`` is no longer live: what it vouched for loses its word. ``keep``: it
        expired with a working link, which the recall vouches for now."""
        if keep:
            cand = self.dialer.get(peer_id)
            if cand is not None:
                cand.vouchers.add(RECALL)
        for orphan in self.dialer.withdraw(peer_id):
            if orphan != peer_id:
                self._drop_candidate(orphan)
            elif not keep:
                self.forget(orphan)

    def unvouch(self, peer_id: str, voucher: str) -> None:
        if self.dialer.unvouch(peer_id, voucher):
            self._drop_candidate(peer_id)

    def recalled(self, peer_id: str) -> None:
        """An expired peer answered: it vouches for its endpoint again."""
        cand = self.dialer.get(peer_id)
        if cand is not None:
            cand.vouchers.discard(RECALL)
            cand.vouchers.add(peer_id)

    def tick(self, timeouts: bool = True) -> None:
        """Close dials that did not complete in time; open those that are due."""
        m = self.m
        if m.transport is None or m.stopping:
            return
        if timeouts:
            for peer_id in self.dialer.timed_out():
                self.close(peer_id)
        for cand in self.dialer.due():
            if cand.peer_id in m.peers or cand.peer_id in m.recall:
                self._dial(cand.peer_id)
            else:
                self.forget(cand.peer_id)
