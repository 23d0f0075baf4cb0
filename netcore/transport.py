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
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

from .identity import Identity
from .protocol import MAX_FRAME

log = logging.getLogger("p2pai.transport")

HWM = 10_000
LINGER_MS = 100
CURVE_OVERHEAD = 33
"""Bytes CURVE adds to each frame ("\\x07MESSAGE", nonce, flags, MAC); ZMQ_MAXMSGSIZE counts
them, so without this a frame of 16 MiB - 32 bytes already closed the connection."""
ZAP_DOMAIN = b"p2pai"
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 4000
DRAIN_BATCH = 64
"""Messages a receive loop takes without awaiting once one arrived: under load this saves
a future and a loop pass per message; the bound keeps other tasks running."""
_LINK_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


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
    socket: zmq.asyncio.Socket
    monitor: zmq.asyncio.Socket
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    sync: zmq.Socket[Any] | None = None
    """A plain socket over the same handle, for non-blocking sends and drains (_send_now)."""


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
        self.auth: AsyncioAuthenticator | None = None
        self.router: zmq.asyncio.Socket | None = None
        self._router_sync: zmq.Socket[Any] | None = None
        self.endpoints: list[str] = []
        self.links: dict[str, _Link] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.bytes_in = 0
        self.bytes_out = 0
        self.send_failures = 0
        self.on_refused: Callable[[str], None] | None = None
        """Told when a peer's ZAP handler refused our key (its trust policy; netcore.trust)."""

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, addresses: list[str], port: int) -> list[str]:
        """Start ZAP, then bind the ROUTER on every address (same port on all)."""
        if not addresses:
            raise TransportError(
                "no network interface to serve on (no IPv4 address is up); "
                "use --interface 127.0.0.1 to run on this machine only"
            )
        self.auth = AsyncioAuthenticator(self.ctx, log=logging.getLogger("p2pai.zap"))
        self.auth.start()
        self.auth.configure_curve_callback(ZAP_DOMAIN.decode(), credentials_provider=self.policy)
        router = self.ctx.socket(zmq.ROUTER)
        _tune(router)
        router.setsockopt(zmq.CURVE_SERVER, 1)
        router.setsockopt(zmq.CURVE_PUBLICKEY, self.identity.public_key)
        router.setsockopt(zmq.CURVE_SECRETKEY, self.identity.secret_key)
        router.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        self.router = router
        self._router_sync = zmq.Socket.shadow(router.underlying)
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
        self._spawn(self._router_loop(router))
        return list(self.endpoints)

    async def close(self) -> None:
        for peer_id in list(self.links):
            self.disconnect(peer_id)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self.router is not None:
            self.router.close(linger=LINGER_MS)
            self.router = self._router_sync = None
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        if not self.ctx.closed:
            # Every socket was closed above; destroy() also covers ZAP's internal sockets.
            self.ctx.destroy(linger=0)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- inbound (ROUTER) --------------------------------------------------------------

    async def _router_loop(self, router: zmq.asyncio.Socket) -> None:
        sync = self._router_sync
        assert sync is not None
        while True:
            try:
                frames = await router.recv_multipart(copy=False)
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError as exc:
                if exc.errno in (zmq.ETERM, zmq.ENOTSOCK):
                    return
                log.debug("router recv: %s", exc)
                continue
            self._on_router_frames(frames)
            # Take what else is queued without a future each (the next await re-arms the
            # edge-triggered descriptor, so nothing is missed).
            for _ in range(DRAIN_BATCH):
                if router.closed:
                    return
                try:
                    frames = sync.recv_multipart(zmq.DONTWAIT, copy=False)
                except zmq.ZMQError:
                    break
                self._on_router_frames(frames)

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
        if any(len(f.buffer) > MAX_FRAME for f in frames[1:]):
            return  # a safety net: with CURVE_OVERHEAD exact, ZeroMQ closed it already
        self.bytes_in += sum(len(f.buffer) for f in frames[1:])
        try:
            self.on_inbound(frames[0].bytes, client_key, frames[1:])
        except Exception:
            log.exception("inbound handler failed")

    def reply(self, routing_id: bytes, frame: bytes) -> bool:
        """Send on the ROUTER to the connection ``routing_id``; never blocks."""
        if self.router is None:
            return False
        return self._send_now(
            self.router, [routing_id, frame], multipart=True, sync=self._router_sync
        )

    # --- outbound (one DEALER per peer) ------------------------------------------------

    def connect(self, peer_id: str, server_key: str, endpoint: str) -> None:
        """Open (or re-point) the DEALER to a peer's ROUTER; ``on_link`` reports the handshake."""
        link = self.links.get(peer_id)
        if link is not None:
            if link.endpoint == endpoint:
                return
            self.disconnect(peer_id)
        sock = self.ctx.socket(zmq.DEALER)
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
        link = _Link(peer_id, endpoint, sock, monitor, sync=zmq.Socket.shadow(sock.underlying))
        self.links[peer_id] = link
        sock.connect(endpoint)
        link.tasks.append(self._spawn(self._dealer_loop(link)))
        link.tasks.append(self._spawn(self._monitor_loop(link)))

    def disconnect(self, peer_id: str) -> None:
        link = self.links.pop(peer_id, None)
        if link is None:
            return
        for task in link.tasks:
            task.cancel()
        with contextlib.suppress(zmq.ZMQError):
            link.socket.disable_monitor()
        link.monitor.close(linger=0)
        link.socket.close(linger=LINGER_MS)

    def send(self, peer_id: str, frame: bytes) -> bool:
        """Send on the peer's DEALER; False when there is no link or its queue is full."""
        link = self.links.get(peer_id)
        if link is None:
            return False
        return self._send_now(link.socket, frame, sync=link.sync)

    def _send_now(
        self,
        sock: zmq.asyncio.Socket,
        data: Any,
        multipart: bool = False,
        sync: zmq.Socket[Any] | None = None,
    ) -> bool:
        if sync is not None:
            # The hot path: a DONTWAIT send on the plain socket, no future per message.
            try:
                if multipart:
                    sync.send_multipart(data, zmq.DONTWAIT, copy=True)
                else:
                    sync.send(data, zmq.DONTWAIT, copy=True)
            except zmq.ZMQError:
                self.send_failures += 1  # a full queue (EAGAIN) or a closed socket
                return False
            # A send may consume the edge-triggered descriptor's wake-up for a message that
            # arrived meanwhile; reading EVENTS through the asyncio socket lets its pending
            # receive look again (what pyzmq's own send does).
            sock.get(zmq.EVENTS)
            self.bytes_out += len(data[-1] if multipart else data)
            return True
        # The asyncio socket tries a DONTWAIT send first and returns a finished future;
        # it also re-arms its reader, so this is safe beside pending receives.
        fut: asyncio.Future[Any]
        if multipart:
            fut = sock.send_multipart(data, flags=zmq.DONTWAIT, copy=True)  # type: ignore[assignment]
        else:
            fut = sock.send(data, flags=zmq.DONTWAIT, copy=True)  # type: ignore[assignment]
        if fut.done() and fut.exception() is None:
            self.bytes_out += len(data[-1] if multipart else data)
            return True
        if fut.done():
            fut.exception()  # retrieved: nothing is logged for a full queue
        self.send_failures += 1
        return False

    async def _dealer_loop(self, link: _Link) -> None:
        sock = link.socket
        sync = link.sync
        while True:
            try:
                frames = await sock.recv_multipart(copy=True)
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError as exc:
                if exc.errno in (zmq.ETERM, zmq.ENOTSOCK):
                    return
                continue
            self._on_dealer_frames(link, frames)
            # Drain what is queued already (see _router_loop); a handler may have closed
            # the link (a bye), so check before each read of the shared handle.
            for _ in range(DRAIN_BATCH if sync is not None else 0):
                if sock.closed or self.links.get(link.peer_id) is not link:
                    break
                try:
                    frames = sync.recv_multipart(zmq.DONTWAIT, copy=True)  # type: ignore[union-attr]
                except zmq.ZMQError:
                    break
                self._on_dealer_frames(link, frames)

    def _on_dealer_frames(self, link: _Link, frames: list[bytes]) -> None:
        self.bytes_in += sum(len(f) for f in frames)
        if len(frames) != 1:
            return  # the protocol sends exactly one frame
        try:
            self.on_reply(link.peer_id, frames[0])
        except Exception:
            log.exception("reply handler failed")

    async def _monitor_loop(self, link: _Link) -> None:
        while True:
            try:
                msg = await link.monitor.recv_multipart()
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError:
                return
            event = parse_monitor_message(msg)["event"]
            log.debug("link %s event %s", link.peer_id, event)
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.on_link(link.peer_id, True)
            elif event == zmq.EVENT_DISCONNECTED:
                self.on_link(link.peer_id, False)
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and self.on_refused is not None:
                self.on_refused(link.peer_id)
