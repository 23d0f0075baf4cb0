"""ZeroMQ transport: one CURVE ROUTER for inbound requests, one CURVE DEALER per peer.

This layer knows sockets and bytes only. It reports:

* ``on_inbound(routing_id, client_key, frames)``: a message on the ROUTER, with the Z85 key
  that the ZAP handler authenticated for its connection (the only sender identity we trust);
* ``on_reply(peer_id, frame)``: a message on the DEALER connected to ``peer_id``;
* ``on_link(peer_id, up)``: that DEALER's connection completed its CURVE handshake (``up``),
  or dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from netcore.net.identity import Identity
from netcore.net.pump import Pump
from netcore.net.zap import ZapHandler
from netcore.wire.protocol import MAX_FRAME

log = logging.getLogger("p2pai.transport")

_DONTWAIT = int(zmq.DONTWAIT)
_SNDMORE = int(zmq.SNDMORE)

HWM = 10_000
LINGER_MS = 100
CURVE_OVERHEAD = 33
"""Bytes CURVE adds to each frame ("\\x07MESSAGE", nonce, flags, MAC); ZMQ_MAXMSGSIZE counts
them, so without this a frame of 16 MiB - 32 bytes already closed the connection."""
ZAP_DOMAIN = b"p2pai"
HEARTBEAT_IVL_MS = 3000
HEARTBEAT_TIMEOUT_MS = 10000
"""ZMTP heartbeats close a connection whose peer went silent (a partition, no RST), so ZeroMQ
reconnects when the link heals; at the peer table's evasive and expired times (3 s, 10 s). In
a mesh of 50 they were ~0.6% of a core per node at 1 s; attempts on a silent peer fail sooner
by their own timers (netcore.tasks.health), so a slower heartbeat costs no task any time."""
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_LINK_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | _HANDSHAKE_FAILED


class TransportError(Exception):
    """The transport cannot start (e.g. the port is busy); the message says what to do."""


InboundHandler = Callable[[bytes, str, list[zmq.Frame]], None]
ReplyHandler = Callable[[str, bytes], None]
LinkHandler = Callable[[str, bool], None]


class TrustPolicy:
    """Decides, inside the ZAP handler, which client keys may connect."""

    def __init__(self, mode: str = "open", allowed: set[str] | None = None) -> None:
        self.mode = mode
        self.allowed = allowed or set()
        self.refused = 0

    def callback(self, domain: str, key: bytes) -> bool:
        if self.mode == "open":
            return True
        ok = key.decode("ascii", "replace") in self.allowed
        if not ok:
            self.refused += 1
        return ok


@dataclass(slots=True)
class _Link:
    peer_id: str
    endpoint: str
    socket: zmq.Socket[Any]
    monitor: zmq.Socket[Any]
    pumps: list[Pump] = field(default_factory=list)
    """The socket's pump first, then the monitor's."""
    via: str = ""
    """The relay this link goes through (its endpoint is our local end of a circuit), or
    ``""`` for a direct link (netcore.net.relaying)."""
    verified: bool = False
    """A CURVE handshake with the peer's key completed on this endpoint (peer exchange
    passes on only such endpoints)."""


def _tune(sock: zmq.Socket[Any]) -> None:
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME + CURVE_OVERHEAD)


class Transport:
    def __init__(
        self,
        identity: Identity,
        on_inbound: InboundHandler,
        on_reply: ReplyHandler,
        on_link: LinkHandler,
        policy: TrustPolicy | None = None,
    ) -> None:
        self.identity = identity
        self.on_inbound = on_inbound
        self.on_reply = on_reply
        self.on_link = on_link
        self.policy = policy or TrustPolicy()
        self.ctx = zmq.asyncio.Context()
        """For helpers that await (netcore.net.clones); the node's own sockets are plain ones
        from :attr:`_plain`, the same ZeroMQ context, read by :class:`Pump`."""
        self._plain: zmq.Context[Any] = zmq.Context.shadow(self.ctx.underlying)
        self.zap: ZapHandler | None = None
        self.router: zmq.Socket[Any] | None = None
        self._router_pump: Pump | None = None
        self.endpoints: list[str] = []
        self.links: dict[str, _Link] = {}
        self._outbox: list[tuple[zmq.Socket[Any], Pump, bytes | None, bytes]] = []
        """Messages sent during this pass of the event loop, written at its end (flush)."""
        self._flush_handle: asyncio.Handle | None = None
        self._pumping = False
        """A pump is handling messages: what they send is flushed when its pass ends."""
        self.bytes_in = 0
        self.bytes_out = 0
        self.send_failures = 0
        self.on_refused: Callable[[str], None] | None = None
        """Told when a peer's ZAP handler refused our key (its trust policy; netcore.trust.manager)."""
        self.on_handshake_failed: Callable[[str, bool], None] | None = None
        """Told when a DEALER's handshake failed: the endpoint is not a ZMTP/CURVE server,
        holds another key, or refused ours (the flag; bounded dialling, netcore.net.dialer)."""

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, addresses: list[str], port: int) -> list[str]:
        """Start ZAP, then bind the ROUTER on every address (same port on all)."""
        if not addresses:
            raise TransportError(
                "no network interface to serve on (no IPv4 address is up); "
                "use --interface 127.0.0.1 to run on this machine only"
            )
        self.zap = ZapHandler(self._plain, ZAP_DOMAIN, self.policy.callback)
        try:
            self.zap.start(asyncio.get_running_loop())
        except zmq.ZMQError as exc:  # one ZAP handler per context: ours is the only one
            raise TransportError(f"cannot start the ZAP handler: {exc}") from None
        router = self._plain.socket(zmq.ROUTER)
        _tune(router)
        router.setsockopt(zmq.CURVE_SERVER, 1)
        router.setsockopt(zmq.CURVE_PUBLICKEY, self.identity.public_key)
        router.setsockopt(zmq.CURVE_SECRETKEY, self.identity.secret_key)
        router.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        self.router = router
        chosen = port
        try:
            for address in addresses:
                if chosen == 0:
                    chosen = router.bind_to_random_port(f"tcp://{address}", max_tries=200)
                else:
                    router.bind(f"tcp://{address}:{chosen}")
                self.endpoints.append(f"tcp://{address}:{chosen}")
        except zmq.ZMQError as exc:
            await self.close()
            if exc.errno == errno.EADDRINUSE:
                raise TransportError(
                    f"port {chosen} is already in use on {address}; "
                    "choose another with --port, or --port 0 for any free port"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise TransportError(
                    f"address {address} is not on this machine; check --interface"
                ) from None
            raise TransportError(f"cannot listen on {address}:{chosen}: {exc}") from None
        self._router_pump = Pump(
            asyncio.get_running_loop(), router, self._on_router_frames, copy=False
        )
        self._router_pump.begin, self._router_pump.end = self._pass_begin, self._pass_end
        return list(self.endpoints)

    async def close(self) -> None:
        self.flush()
        for peer_id in list(self.links):
            self.disconnect(peer_id)
        if self._router_pump is not None:
            self._router_pump.close()
            self._router_pump = None
        if self.router is not None:
            self.router.close(linger=LINGER_MS)
            self.router = None
        if self.zap is not None:
            self.zap.close()
            self.zap = None
        if not self.ctx.closed:
            # Every socket was closed above; destroy() also covers ZAP's internal sockets.
            self.ctx.destroy(linger=0)

    # --- inbound (ROUTER) --------------------------------------------------------------

    def set_router_batch_hooks(self, begin: Callable[[], None], end: Callable[[], None]) -> None:
        """Call ``begin`` before each batch of ROUTER messages is handled, ``end`` after."""
        pump = self._router_pump
        if pump is None:
            return

        def router_begin() -> None:
            self._pass_begin()
            begin()

        def router_end() -> None:
            end()
            self._pass_end()

        pump.begin, pump.end = router_begin, router_end

    def _pass_begin(self) -> None:
        self._pumping = True

    def _pass_end(self) -> None:
        """After a pass over one socket: its replies go out now, not one loop turn later."""
        self._pumping = False
        if self._outbox:
            self.flush()

    def _on_router_frames(self, frames: list[zmq.Frame]) -> None:
        if len(frames) < 2:
            return
        try:
            client_key = str(frames[1].get("User-Id") or "")
        except zmq.ZMQError:
            client_key = ""
        if not client_key:
            # No authenticated sender: the protocol says drop it.
            return
        size = 0
        for frame in frames[1:]:
            n = len(frame.buffer)
            if n > MAX_FRAME:
                return  # a safety net: with CURVE_OVERHEAD exact, ZeroMQ closed it already
            size += n
        self.bytes_in += size
        self.on_inbound(frames[0].bytes, client_key, frames[1:])

    def reply(self, routing_id: bytes, frame: bytes) -> bool:
        """Send on the ROUTER to the connection ``routing_id``; never blocks."""
        if self.router is None or self._router_pump is None:
            return False
        return self._send_now(self.router, self._router_pump, frame, routing_id)

    # --- outbound (one DEALER per peer) ------------------------------------------------

    def connect(self, peer_id: str, server_key: str, endpoint: str, via: str = "") -> bool:
        """Open (or re-point) the DEALER to a peer's ROUTER; ``on_link`` reports the handshake.

        True when a new DEALER was made: what is sent to it before its handshake completes
        is queued by ZeroMQ and goes out as soon as it does."""
        link = self.links.get(peer_id)
        if link is not None:
            if link.endpoint == endpoint:
                return False
            self.disconnect(peer_id)
        sock = self._plain.socket(zmq.DEALER)
        _tune(sock)
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode("ascii"))
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.identity.public_key)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.identity.secret_key)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        # ZMTP heartbeats on our side of each link: a connection whose other end went silent
        # (a partition: no RST ever comes) is closed after HEARTBEAT_TIMEOUT, so its in-flight
        # tasks are retried at once and ZeroMQ reconnects when the link heals. The ROUTER only
        # answers them (libzmq does that without the option), halving the idle traffic.
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
        monitor = sock.get_monitor_socket(_LINK_EVENTS)
        link = _Link(peer_id, endpoint, sock, monitor, via=via)
        self.links[peer_id] = link
        sock.connect(endpoint)
        loop = asyncio.get_running_loop()
        pump = Pump(loop, sock, lambda frames: self._on_dealer_frames(link, frames), copy=True)
        pump.begin, pump.end = self._pass_begin, self._pass_end
        link.pumps.append(pump)
        link.pumps.append(
            Pump(loop, monitor, lambda frames: self._on_monitor(link, frames), copy=True)
        )
        return True

    def disconnect(self, peer_id: str) -> None:
        link = self.links.pop(peer_id, None)
        if link is None:
            return
        self.flush()  # what was sent to it (a bye) goes out before its socket closes
        for pump in link.pumps:
            pump.close()
        with contextlib.suppress(zmq.ZMQError):
            link.socket.disable_monitor()
        link.monitor.close(linger=0)
        link.socket.close(linger=LINGER_MS)

    def send(self, peer_id: str, frame: bytes) -> bool:
        """Send on the peer's DEALER; False when there is no link or its queue is full."""
        link = self.links.get(peer_id)
        if link is None or not link.pumps:
            return False
        return self._send_now(link.socket, link.pumps[0], frame)

    def _send_now(
        self, sock: zmq.Socket[Any], pump: Pump, frame: bytes, routing_id: bytes | None = None
    ) -> bool:
        """Queue a message for the end of this loop pass (see :meth:`flush`); never blocks."""
        if pump.closed:
            self.send_failures += 1
            return False
        self._outbox.append((sock, pump, routing_id, frame))
        if self._flush_handle is None and not self._pumping:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)
        return True

    def flush(self) -> None:
        """Write the queued messages, back to back.

        A send to a sleeping ZeroMQ I/O thread wakes it (a system call and a thread switch,
        ~7 us here); sends that follow each other closely find it awake. Replies and requests
        made while one batch of messages is handled therefore go out together, once the
        loop has run what was ready. A full queue (EAGAIN at the high-water mark) loses the
        message, as a dropped frame would: the sender's attempt timer retries it.
        """
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        outbox, self._outbox = self._outbox, []
        touched: set[Pump] = set()
        for sock, pump, routing_id, frame in outbox:
            if pump.closed:
                self.send_failures += 1
                continue
            try:
                if routing_id is not None:
                    sock.send(routing_id, _DONTWAIT | _SNDMORE)
                sock.send(frame, _DONTWAIT)
            except zmq.ZMQError:
                self.send_failures += 1
                continue
            self.bytes_out += len(frame)
            touched.add(pump)
        for pump in touched:
            pump.after_send()

    def _on_dealer_frames(self, link: _Link, frames: list[bytes]) -> None:
        if self.links.get(link.peer_id) is not link:
            return  # closed by a handler of an earlier message of this batch (a bye)
        self.bytes_in += sum(len(f) for f in frames)
        if len(frames) != 1:
            return  # the protocol sends exactly one frame
        self.on_reply(link.peer_id, frames[0])

    def _on_monitor(self, link: _Link, frames: list[bytes]) -> None:
        if self.links.get(link.peer_id) is not link:
            return
        event = parse_monitor_message(frames)["event"]
        log.debug("link %s event %s", link.peer_id, event)
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            link.verified = True
            self.on_link(link.peer_id, True)
        elif event == zmq.EVENT_DISCONNECTED:
            self.on_link(link.peer_id, False)
        elif event & _HANDSHAKE_FAILED:
            refused = event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
            if refused and self.on_refused is not None:
                self.on_refused(link.peer_id)
            if self.on_handshake_failed is not None:
                self.on_handshake_failed(link.peer_id, refused)
