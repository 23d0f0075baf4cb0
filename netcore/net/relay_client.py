"""A node's link to one relay: its reservation, the registry it hears, and both ends of
the circuits through it (:mod:`netcore.net.relay_server` is the other side).

* **Control link**: one DEALER, CURVE client to the relay's key (given in the relay's address
  ``tcp://host:port#KEY``, so a machine that is not that relay cannot pose as it). It sends
  ``relay_reserve`` at once and renews every third of the reservation's ``ttl``; ZeroMQ
  reconnects it and heartbeats keep it alive.
* **Outgoing circuits** (we reach a reserved node): :meth:`RelayClient.local_endpoint` is a
  listener on 127.0.0.1 that our DEALER to that peer connects to; each connection it accepts
  asks the relay for a circuit (``relay_connect``) and is spliced to a data connection that
  opens with the circuit's token. Our DEALER's ZMTP + CURVE thus runs to the peer itself.
* **Incoming circuits** (a node reaches us): ``relay_incoming`` names a token; we open a data
  connection with it and splice it to our own ROUTER, which authenticates the peer as for
  any connection (ZAP, allowlist).
* **Punched links** (:mod:`netcore.net.punching`): a direct connection to the peer handed to
  :meth:`RelayClient.adopt` replaces the circuit: the circuit is closed, our DEALER
  reconnects to the same local listener, and that connection is spliced to the direct one.
  When the direct connection ends, the next one goes through the relay again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from netcore.config.peers import StaticPeer
from netcore.net.identity import Identity
from netcore.net.pump import Pump
from netcore.net.splice import Stream, close_stream, splice
from netcore.wire import protocol
from netcore.wire import relay as wire
from netcore.wire.addresses import peer_id_for
from netcore.wire.protocol import ProtocolError

log = logging.getLogger("p2pai.relay")

ASK_TIMEOUT_S = 5.0
"""A ``relay_connect`` or ``relay_reserve`` unanswered by then has failed."""
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
MAX_INCOMING = 256
"""Circuits to our ROUTER at once, from all relays; more ``relay_incoming`` are ignored."""
MAX_ACCEPTS_PER_PEER = 4
"""Connections one local listener serves at once (our DEALER needs one)."""
HEARTBEAT_IVL_MS = 5000
HEARTBEAT_TIMEOUT_MS = 15000


class RelayRefused(Exception):
    """The relay said no (one line: its ``error`` message), or did not answer."""


class RelayClient:
    """One relay, for one node; all of it on the node's loop."""

    def __init__(
        self,
        relay: StaticPeer,
        identity: Identity,
        ctx: zmq.Context[Any],
        hello: Callable[[], dict[str, Any]],
        router_endpoint: Callable[[], str],
        on_peers: Callable[[RelayClient, list[dict[str, Any]]], None],
        incoming: dict[str, int],
        on_lost: Callable[[RelayClient], None] = lambda client: None,
    ) -> None:
        self.relay = relay
        self.address = relay.text
        self.identity = identity
        self.ctx = ctx
        self.hello = hello
        """Our ``net``, ``name`` and ``caps`` for ``relay_reserve``."""
        self.router_endpoint = router_endpoint
        self.on_peers = on_peers
        self.incoming = incoming
        """Open incoming circuits by requester key, shared by every relay of the node."""
        self.on_lost = on_lost
        """Told when the control link drops (the relay died or the path to it): the peers
        routed through us go through another relay at once (netcore.net.relaying)."""
        self.linked = False
        """The control link's CURVE handshake completed and it has not dropped since."""
        self.observed: tuple[str, int] | None = None
        """Where the relay sees our control link come from (its ``observed``), if it says."""
        self.state = "connecting"
        """``connecting``, ``reserved`` or ``refused``."""
        self.error = ""
        """The relay's last refusal, one line."""
        self.ttl = 30.0
        self.limits: dict[str, Any] = {}
        self.reserved_at = 0.0
        self.counters = dict.fromkeys(
            ("reserves", "refusals", "circuits_out", "circuits_in", "circuit_errors"), 0
        )
        self.bytes_out = 0
        """Bytes through this relay's circuits, both directions."""
        self._sock: zmq.Socket[Any] | None = None
        self._pump: Pump | None = None
        self._waiting: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        self._reserve_id = b""
        self._listeners: dict[str, tuple[asyncio.base_events.Server | None, str, int]] = {}
        """Target key -> (server, endpoint, connections open)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._said: dict[str, str] = {}
        """Target key -> the last reason its circuit failed (logged once)."""
        self._punched: dict[str, tuple[Stream, Callable[[], None]]] = {}
        """Target key -> a direct connection (and what to call when it ends) for our DEALER's
        next connection to that key's listener."""
        self._local: dict[str, set[asyncio.StreamWriter]] = {}
        """Target key -> our DEALER's connections to the listener, spliced now."""
        self.punched_open = 0
        """Our DEALERs' links carried by a direct connection now, not by this relay."""
        self._direct_keys: dict[str, int] = {}
        """Target key -> our DEALER's connections to it spliced to a direct one now."""
        self._reserving = False
        self._monitor: zmq.Socket[Any] | None = None
        self._monitor_pump: Pump | None = None
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 100)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME)
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.relay.key.encode("ascii"))
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.identity.public_key)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.identity.secret_key)
        sock.setsockopt(zmq.RECONNECT_IVL, 200)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(RETRY_MAX_S * 1000))
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        sock.connect(self.relay.endpoint)
        self._sock = sock
        loop = asyncio.get_running_loop()
        self._pump = Pump(loop, sock, self._on_frames, copy=True)
        self._monitor = monitor
        self._monitor_pump = Pump(loop, monitor, self._on_monitor, copy=True)

    async def run(self) -> None:
        """Reserve and keep the reservation; cancelled when the node stops."""
        backoff = RETRY_MIN_S
        while True:
            ok = await self._reserve()
            if ok:
                backoff = RETRY_MIN_S
                await asyncio.sleep(max(1.0, self.ttl / 3))
            else:
                await asyncio.sleep(backoff)
                backoff = min(RETRY_MAX_S, backoff * 2)

    async def close(self) -> None:
        self._closed = True
        if self._sock is not None and self.state == "reserved":
            self._send({"t": wire.LEAVE})
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for server, _, _ in self._listeners.values():
            if server is not None:
                server.close()
        self._listeners.clear()
        for fut in self._waiting.values():
            if not fut.done():
                fut.cancel()
        for stream, _ in self._punched.values():
            stream[1].close()
        self._punched.clear()
        if self._pump is not None:
            self._pump.close()
        if self._monitor_pump is not None:
            self._monitor_pump.close()
        if self._sock is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._sock.disable_monitor()
            self._sock.close(linger=100)
            self._sock = None
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- control messages ----------------------------------------------------------------

    def _send(self, msg: dict[str, Any]) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.send(wire.encode(msg), zmq.DONTWAIT)
        except zmq.ZMQError:
            return False
        finally:
            if self._pump is not None:
                self._pump.after_send()
        return True

    async def _ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        rid = protocol.new_id()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            if not self._send({**msg, "id": rid}):
                raise RelayRefused("the relay's control link is not ready")
            reply = await asyncio.wait_for(fut, ASK_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise RelayRefused(f"relay {self.relay.endpoint} did not answer") from None
        finally:
            self._waiting.pop(rid, None)
        if reply["t"] == "error":
            raise RelayRefused(f"relay refused: {reply['code']}: {reply['message']}")
        return reply

    async def _reserve(self) -> bool:
        self.counters["reserves"] += 1
        self._reserving = True
        try:
            reply = await self._ask({"t": wire.RESERVE, **self.hello()})
        except RelayRefused as exc:
            if "refused" in str(exc):
                self.counters["refusals"] += 1
                self.state = "refused"
            elif self.state == "reserved":
                self.state = "connecting"
            if str(exc) != self.error:
                log.warning("relay %s: %s", self.relay.endpoint, exc)
            self.error = str(exc)
            return False
        finally:
            self._reserving = False
        if self.state != "reserved":
            log.info("relay %s: reservation held", self.relay.endpoint)
        self.state, self.error = "reserved", ""
        self.ttl = float(reply["ttl"])
        self.reserved_at = time.monotonic()
        self.observed = wire.observed_address(reply)
        limits = reply.get("limits")
        self.limits = limits if isinstance(limits, dict) else {}
        self.on_peers(self, wire.entries(reply))
        return True

    def _on_monitor(self, frames: list[bytes]) -> None:
        event = parse_monitor_message(frames)["event"]
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.linked = True
            if self.state != "reserved" and not self._closed and not self._reserving:
                self._spawn(self._reserve())  # back: reserve now, not at the next renewal
        elif event == zmq.EVENT_DISCONNECTED and self.linked:
            self.linked = False
            if self._closed:
                return
            log.warning("relay %s: control link lost; reconnecting", self.relay.endpoint)
            if self.state == "reserved":
                self.state = "connecting"
            self.on_lost(self)

    def _on_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 1:
            return
        try:
            msg = wire.decode(frames[0])
        except ProtocolError:
            return
        t = msg["t"]
        rid = msg.get("id")
        if isinstance(rid, bytes) and rid in self._waiting:
            fut = self._waiting.pop(rid)
            if not fut.done():
                fut.set_result(msg)
        elif t == wire.PEERS and self.state == "reserved":
            self.on_peers(self, wire.entries(msg))
        elif t == wire.INCOMING and not self._closed:
            if sum(self.incoming.values()) >= MAX_INCOMING:
                log.debug(
                    "relay %s: incoming circuit ignored (%d open)", self.address, MAX_INCOMING
                )
                return
            self._spawn(self._incoming(msg["token"], msg["key"]))

    # --- circuits ------------------------------------------------------------------------

    async def _open_data(self, token: bytes) -> Stream:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.relay.host, self.relay.port), ASK_TIMEOUT_S
        )
        writer.write(wire.preamble(token))
        return reader, writer

    def _count(self, n: int) -> None:
        self.bytes_out += n

    async def _incoming(self, token: bytes, key: str) -> None:
        """``key`` reaches us through the relay: join its circuit to our ROUTER."""
        self.incoming[key] = self.incoming.get(key, 0) + 1
        try:
            try:
                remote = await self._open_data(token)
            except (OSError, asyncio.TimeoutError) as exc:
                self.counters["circuit_errors"] += 1
                log.debug("relay %s: data connection failed: %s", self.address, exc)
                return
            endpoint = self.router_endpoint().removeprefix("tcp://")
            host, _, port = endpoint.rpartition(":")
            try:
                local = await asyncio.open_connection(host, int(port))
            except (OSError, ValueError):
                await close_stream(remote[1])
                return
            self.counters["circuits_in"] += 1
            await splice(remote, local, on_bytes=self._count)
        finally:
            left = self.incoming.get(key, 1) - 1
            if left > 0:
                self.incoming[key] = left
            else:
                self.incoming.pop(key, None)

    def local_endpoint(self, key: str) -> str:
        """``tcp://127.0.0.1:<port>``: connecting there reaches ``key`` through this relay."""
        known = self._listeners.get(key)
        if known is not None:
            return known[1]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        endpoint = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
        # Listening already: a DEALER that connects before the server runs waits in the backlog.
        self._listeners[key] = (None, endpoint, 0)
        self._spawn(self._serve(key, sock))
        return endpoint

    def drop_endpoint(self, key: str) -> None:
        """No dial to ``key`` through this relay any more: close its local listener."""
        known = self._listeners.pop(key, None)
        self._said.pop(key, None)
        if known is not None and known[0] is not None:
            known[0].close()
        punched = self._punched.pop(key, None)
        if punched is not None:
            punched[0][1].close()
            punched[1]()

    def carries_direct(self, key: str) -> bool:
        """Our DEALER's link to ``key`` goes over a punched connection now (or is about to:
        handed over and waiting for the DEALER's reconnection)."""
        return key in self._direct_keys or key in self._punched

    def adopt(self, key: str, direct: Stream, ended: Callable[[], None]) -> bool:
        """Carry our DEALER's link to ``key`` over ``direct`` from now on: the circuit in use
        closes, and the DEALER's reconnection to the same listener is spliced to ``direct``.
        ``ended`` is called once ``direct`` is done with. False (nothing taken) when we have
        no listener for ``key``."""
        if key not in self._listeners or not self._local.get(key) or self._closed:
            return False  # our DEALER is not on this route now: nothing to move
        old = self._punched.pop(key, None)
        if old is not None:
            old[0][1].close()
            old[1]()
        self._punched[key] = (direct, ended)
        for writer in list(self._local.get(key, ())):
            writer.close()  # the splice ends; ZeroMQ reconnects in RECONNECT_IVL
        return True

    async def _serve(self, key: str, sock: socket.socket) -> None:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._spawn(serve_one(reader, writer))  # tracked: cancelled when we close

        async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            entry = self._listeners.get(key)
            if entry is None or entry[2] >= MAX_ACCEPTS_PER_PEER:
                writer.close()
                return
            self._listeners[key] = (entry[0], entry[1], entry[2] + 1)
            local = self._local.setdefault(key, set())
            local.add(writer)
            try:
                punched = self._punched.pop(key, None)
                if punched is None:
                    await self._outgoing(key, (reader, writer))
                else:
                    self.punched_open += 1
                    self._direct_keys[key] = self._direct_keys.get(key, 0) + 1
                    try:
                        await splice((reader, writer), punched[0])
                    finally:
                        self.punched_open -= 1
                        left = self._direct_keys.pop(key, 1) - 1
                        if left > 0:
                            self._direct_keys[key] = left
                        punched[1]()
            finally:
                local.discard(writer)
                if not local and self._local.get(key) is local:
                    del self._local[key]
                entry = self._listeners.get(key)
                if entry is not None:
                    self._listeners[key] = (entry[0], entry[1], max(0, entry[2] - 1))

        server = await asyncio.start_server(accepted, sock=sock)
        entry = self._listeners.get(key)
        if entry is None:  # dropped before it started
            server.close()
            return
        self._listeners[key] = (server, entry[1], entry[2])

    async def _outgoing(self, key: str, local: Stream) -> None:
        try:
            if not self.linked:
                raise RelayRefused(f"no control link to relay {self.relay.endpoint}")
            reply = await self._ask({"t": wire.CONNECT, "key": key})
            remote = await self._open_data(reply["token"])
        except (RelayRefused, OSError, asyncio.TimeoutError) as exc:
            self.counters["circuit_errors"] += 1
            if self._said.get(key) != str(exc):  # one line per new reason, not per retry
                self._said[key] = str(exc)
                log.info("relay %s: no circuit to %s: %s", self.address, peer_id_for(key), exc)
            await close_stream(local[1])
            return
        self._said.pop(key, None)
        self.counters["circuits_out"] += 1
        await splice(local, remote, on_bytes=self._count)

    def status(self) -> dict[str, Any]:
        return {
            "relay": self.address,
            "state": self.state,
            "error": self.error,
            "routes": len(self._listeners),
            "punched": self.punched_open,
            "observed": f"{self.observed[0]}:{self.observed[1]}" if self.observed else "",
            **self.counters,
            "bytes": self.bytes_out,
        }
