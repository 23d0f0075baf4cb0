"""Session: the messages on a node's links, read in the protocol's order (PROTOCOL.md §3-5).

On the ROUTER (requests from peers, authenticated by ZAP): one frame, the envelope, then
``hello`` first on every connection, then validation; ``ping`` and ``bye`` are answered
here, work (``task``, ``model_get``, ``cancel``) goes to the node's handlers. On our DEALERs
(replies, and the peer's own hello, pings and bye): pongs, hellos and byes update
:class:`~netcore.net.membership.Membership`; work replies (``result``, ``error``,
``model_chunk``) go to the node's handler.

One request goes the other way: a worker that lacks a task's model sends ``model_get`` back
on the connection the task came on (:meth:`Session.send_back`), so it needs no connection of
its own to the requester; the requester answers it on its DEALER and the worker reads the
``model_chunk`` on its ROUTER (``dealer_serves`` in docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from netcore.net.membership import MAX_CONNECTIONS_TRACKED, Membership
from netcore.net.peers import Peer
from netcore.observe.events import PeerUpdated
from netcore.wire import protocol
from netcore.wire.protocol import ProtocolError

log = logging.getLogger("p2pai.node")

WORK_REPLIES = frozenset({"result", "error", "model_chunk"})


class Session:
    """Reads every frame of one node's links; answers the link-level messages itself."""

    def __init__(self, membership: Membership) -> None:
        self.m = membership
        self.trust = membership.trust
        self.counters = membership.counters
        self.errors_sent: dict[str, int] = {}
        """``error`` replies this node sent, by code (metrics)."""
        self.errors_received: dict[str, int] = {}
        """``error`` replies peers sent us, by code (unknown codes count as ``other``)."""
        self.greeted: OrderedDict[bytes, str] = OrderedDict()
        """ROUTER connections (routing id) that sent a valid ``hello``, with their key."""
        self._wrong_net: set[bytes] = set()
        self.on_request: Callable[[bytes, str, dict[str, Any]], None] = lambda rid, peer, msg: None
        """A valid ``task`` or ``model_get`` from a greeted peer."""
        self.on_cancel: Callable[[str, bytes], None] = lambda peer_id, req_id: None
        self.on_work_reply: Callable[[str, dict[str, Any]], None] = lambda peer_id, msg: None
        """A ``result``, ``error`` or ``model_chunk`` on our DEALER to that peer."""
        self.on_back_reply: Callable[[str, dict[str, Any]], bool] = lambda peer_id, msg: False
        """A ``model_chunk`` or ``error`` on our ROUTER from a greeted peer, answering a request
        we sent back on its connection: True if it was awaited."""
        self.serve_model: Callable[[dict[str, Any]], dict[str, Any]] = lambda msg: protocol.error(
            "unknown_model", "this node shares no models", msg["id"]
        )
        """The reply to a valid ``model_get`` that came on our DEALER to a peer."""
        self.load: Callable[[], Mapping[str, int]] = lambda: {}
        """``inflight``, ``queued`` and ``capacity`` for our pongs."""

    def say_bye(self) -> None:
        """``bye`` on every connection, both ways: we are leaving."""
        transport = self.m.transport
        assert transport is not None
        bye = protocol.encode({"t": "bye"})
        for peer_id in list(transport.links):
            transport.send(peer_id, bye)
        for rid in list(self.greeted):
            transport.reply(rid, bye)

    def pong(self, req_id: bytes | None, ts: Any) -> dict[str, Any]:
        return {"t": "pong", "id": req_id, "ts": ts, **self.load()}

    # --- the ROUTER: requests -------------------------------------------------------------

    def on_router_frame(self, rid: bytes, client_key: str, frames: list[Any]) -> None:
        """A frame on our ROUTER from the authenticated key ``client_key``."""
        if not self.trust.on_frame(rid, client_key, frames):
            return
        if len(frames) != 1:
            self.reply_error(rid, "bad_request", "a message is exactly one frame", None)
            return
        try:
            msg = protocol.decode_envelope(frames[0].buffer)
        except ProtocolError as exc:
            self.reply_error(rid, exc.code, exc.message, exc.req_id)
            return
        peer_id = self.m.peer_id_of(client_key)
        self.m.heard(peer_id)
        t = msg["t"]
        if t not in protocol.REQUESTS:
            self._on_notice(rid, client_key, peer_id, msg)
            return
        req_id = (
            msg.get("id") if isinstance(msg.get("id"), bytes) and len(msg["id"]) == 16 else None
        )
        if t == "hello":
            self.on_hello(rid, client_key, peer_id, msg, req_id)
            return
        if self.greeted.get(rid) != client_key:
            if rid in self._wrong_net:
                self.reply_error(
                    rid, "bad_request", "this connection's hello named another network", req_id
                )
            else:
                self.reply_error(rid, "hello_required", "send hello first", req_id)
            return
        try:
            protocol.validate(msg)
        except ProtocolError as exc:
            self.reply_error(rid, exc.code, exc.message, req_id)
            return
        if t == "ping":
            self.counters["pings_received"] += 1
            self.reply(rid, self.pong(req_id, msg["ts"]))
        elif t == "punch":
            self.reply(rid, self.m.punching.on_request(client_key, peer_id, msg))
        else:  # task, model_get
            self.on_request(rid, peer_id, msg)

    def _on_notice(self, rid: bytes, client_key: str, peer_id: str, msg: dict[str, Any]) -> None:
        """Messages that never get a reply; a bad one (or one nobody awaits) is dropped and
        counted."""
        t = msg["t"]
        try:
            protocol.validate(msg)
        except ProtocolError:
            self.counters["dropped"] += 1
            return
        if t == "bye":
            self.greeted.pop(rid, None)
            self.m.drop_peer(peer_id, "bye")
        elif t == "cancel" and self.greeted.get(rid) is not None:
            self.on_cancel(peer_id, msg["id"])
        elif (
            t in ("model_chunk", "error")
            and self.greeted.get(rid) == client_key
            and self.on_back_reply(peer_id, msg)
        ):
            if t == "error":
                code = msg["code"] if msg["code"] in protocol.ERROR_CODES else "other"
                self.errors_received[code] = self.errors_received.get(code, 0) + 1
        else:
            self.counters["dropped"] += 1

    def reply(self, rid: bytes, msg: Mapping[str, Any], to: str | None = None) -> None:
        assert self.m.transport is not None
        if to is not None and not self.trust.deliverable(rid, to):
            return  # the request's connection is gone, or another key's now (netcore.trust.manager)
        if msg["t"] == "error":
            self.errors_sent[msg["code"]] = self.errors_sent.get(msg["code"], 0) + 1
        self.m.transport.reply(rid, protocol.encode(msg))

    def send_back(self, rid: bytes, peer_id: str, msg: Mapping[str, Any]) -> bool:
        """A request to ``peer_id`` on its connection ``rid`` to our ROUTER (the one its task
        came on); False when that connection is gone, ungreeted or no longer that peer's."""
        transport = self.m.transport
        key = self.greeted.get(rid)
        if transport is None or self.m.stopping or key is None or self.m.peer_id_of(key) != peer_id:
            return False
        if not self.trust.deliverable(rid, peer_id):
            return False
        return transport.reply(rid, protocol.encode(msg))

    def reply_error(self, rid: bytes, code: str, message: str, req_id: bytes | None) -> None:
        self.counters["protocol_errors"] += 1
        self.reply(rid, protocol.error(code, message, req_id))

    def on_hello(
        self, rid: bytes, client_key: str, peer_id: str, msg: dict[str, Any], req_id: bytes | None
    ) -> None:
        try:
            protocol.validate(msg)
        except ProtocolError as exc:
            self.reply_error(rid, exc.code, exc.message, req_id)
            return
        if msg["net"] != self.m.config.network:
            self.greeted.pop(rid, None)
            self._wrong_net.add(rid)
            if len(self._wrong_net) > MAX_CONNECTIONS_TRACKED:
                self._wrong_net.clear()
            self.reply_error(
                rid,
                "bad_request",
                f"network mismatch: this node is on {self.m.config.network!r}, hello names {msg['net'][:63]!r}",
                req_id,
            )
            return
        refused = self.trust.check_hello(rid, client_key, msg)
        if refused is not None:  # our own key: a clone (netcore.net.clones)
            self.reply_error(rid, "bad_request", refused, req_id)
            return
        self._wrong_net.discard(rid)
        self.greeted[rid] = client_key
        self.greeted.move_to_end(rid)
        while len(self.greeted) > MAX_CONNECTIONS_TRACKED:
            self.greeted.popitem(last=False)
        self.reply(rid, self.m.hello(req_id or protocol.new_id()))
        if self.m.stopping:
            return
        # The peer waits on this reply to count us as up: send it now, and learn from its
        # hello (connect back, share peers) after the other hellos of this batch are answered
        # (when a node joins, every running node greets it at once).
        assert self.m.transport is not None
        self.m.transport.flush()
        asyncio.get_running_loop().call_soon(self._learn_from_hello, rid, client_key, peer_id, msg)

    def _learn_from_hello(
        self, rid: bytes, client_key: str, peer_id: str, msg: dict[str, Any]
    ) -> None:
        if self.m.stopping or self.greeted.get(rid) != client_key:
            return  # it said bye (or we stopped) meanwhile
        self.m.departed.pop(peer_id, None)
        recalled = self.m.recall.recall(peer_id)  # back after a partition: same id, same row
        peer, _ = self.m.peers.upsert(
            peer_id,
            client_key,
            recalled.source if recalled is not None else "hello",
            name=msg["name"][:63],
            caps=msg["caps"],
            models=msg["models"],
            capacity=msg.get("capacity"),
            accel=msg.get("accel"),
            serves_back=protocol.serves_back(msg),
        )
        if msg["endpoints"]:
            peer.endpoints = list(msg["endpoints"])
            if recalled is not None and self.m.transport and peer_id in self.m.transport.links:
                self.m.on_link(peer_id, True)  # our kept link is up already: greet it
            # Also when a link exists: the hello may name a new endpoint (a peer restarted
            # on another port), and connect() re-points the DEALER there.
            self.m.connect_soon(peer_id)
        # Through a relay, or a punched connection (netcore.net.relaying, .punching)?
        self.m.relaying.update_reach(peer)
        self.m.announce(peer)
        self.m.reach.learn(peer_id, msg)
        self.m.changed()

    def on_error_reply(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        code = msg.get("code")
        counted = code if code in protocol.ERROR_CODES else "other"
        self.errors_received[counted] = self.errors_received.get(counted, 0) + 1
        rid = msg.get("id")
        if isinstance(rid, bytes) and rid in self.m.hello_ids:
            self.m.hello_ids.pop(rid, None)
            log.warning(
                "peer %s refused our hello: %s", peer.peer_id if peer else "?", msg.get("message")
            )
            return
        if code == "hello_required" and peer is not None:
            # ZeroMQ reconnected silently: greet again on the new connection.
            peer.greeted = False
            self.m.on_link(peer.peer_id, True)

    # --- our DEALERs: replies, and the peer's own link messages ---------------------------

    def on_dealer_frame(self, peer_id: str, frame: bytes) -> None:
        """A frame on our DEALER to ``peer_id`` (authenticated by CURVE: it is that peer)."""
        try:
            msg = protocol.decode(frame)
        except ProtocolError:
            self.counters["dropped"] += 1
            return
        m = self.m
        m.heard(peer_id)
        peer = m.peers.get(peer_id)
        if peer is None and peer_id in m.recall:
            # A probe answered after a partition: greet it again on this link.
            peer = m.restore(peer_id)
            if peer is not None:
                m.on_link(peer_id, True)
        t = msg["t"]
        answered = t in ("punch_ok", "error") and m.punching.on_reply(msg)
        if answered and (t == "punch_ok" or msg["code"] != "hello_required"):
            return  # (hello_required: greet again, below, as for any request)
        if t in WORK_REPLIES:
            if t == "error":
                self.on_error_reply(peer, msg)  # e.g. hello_required: greet again
            self.on_work_reply(peer_id, msg)
        elif t == "pong":
            self._on_pong(peer_id, peer, msg)
        elif t == "hello":
            m.hello_ids.pop(msg["id"], None)
            if peer is None or msg["net"] != m.config.network:
                return
            peer.name = msg["name"][:63]
            peer.caps = msg["caps"]
            peer.models = msg["models"]
            peer.capacity = msg.get("capacity") or peer.capacity
            peer.accel = msg.get("accel") or peer.accel
            peer.serves_back = protocol.serves_back(msg)
            peer.punches = msg.get("punch") == 1
            peer.greeted = True
            m.announce(peer)
            m.first_ping(peer)
            m.punching.consider(peer)
            m.reach.learn(peer_id, msg)
            m.changed()
        elif t == "ping" and m.transport is not None:
            m.transport.send(peer_id, protocol.encode(self.pong(msg["id"], msg["ts"])))
        elif t == "model_get" and m.transport is not None and peer is not None:
            # A worker we sent a task to fetches its model back on this link (dealer_serves).
            answer = self.serve_model(msg)
            if answer["t"] == "error":
                self.errors_sent[answer["code"]] = self.errors_sent.get(answer["code"], 0) + 1
            m.transport.send(peer_id, protocol.encode(answer))
        elif t == "bye":
            m.drop_peer(peer_id, "bye")
        else:
            self.counters["dropped"] += 1

    def _on_pong(self, peer_id: str, peer: Peer | None, msg: dict[str, Any]) -> None:
        waiter = self.m.pings.pop(msg["id"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(time.monotonic() - msg["ts"])
        if peer is None:
            return
        ts = msg["ts"]
        if isinstance(ts, (int, float)) and 0 <= time.monotonic() - ts < 60:
            peer.observe_rtt(time.monotonic() - ts)
        peer.remote_inflight = msg.get("inflight", 0)
        peer.remote_queued = msg.get("queued", 0)
        peer.capacity = msg.get("capacity", peer.capacity) or peer.capacity
        self.m.publish(
            PeerUpdated(
                peer_id=peer_id,
                rtt_ms=round(peer.rtt * 1000, 3) if peer.rtt is not None else None,
                inflight=peer.remote_inflight,
                queued=peer.remote_queued,
                capacity=peer.capacity,
            )
        )
