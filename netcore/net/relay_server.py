"""The relay (``p2pai relay``): reservations, the rendezvous registry, and circuits spliced
byte for byte (the idea of libp2p's circuit relay v2, over plain TCP).

One public TCP port (:mod:`netcore.wire.relay`). A connection that opens with the ZMTP
signature is a control link: it is joined to the relay's own CURVE ROUTER on 127.0.0.1, so
every control message comes with the key that authenticated it (ZAP sets ``User-Id``). A
node holds a **reservation** by sending ``relay_reserve`` and renewing it; the relay lists it
in its network's **registry**, which goes to every reserved node of that network when it
changes (only keys that hold a reservation now: keys proven by a CURVE handshake). A node
asks ``relay_connect`` for a circuit to a reserved key; the relay gives each end a token
(the target's over its own control link), both open a data connection that starts with
their token, and the relay joins the two (:func:`netcore.net.splice.splice`). It never
holds a session key: what it copies is the peers' ZMTP + CURVE.

Everything is bounded (:class:`netcore.net.relay_limits.RelayLimits`), and every refusal is
one ``error`` line the node logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from netcore.net.identity import Identity
from netcore.net.pump import Pump
from netcore.net.relay_limits import RelayLimits
from netcore.net.splice import SpliceResult, Stream, close_stream, splice
from netcore.net.zap import ZapHandler
from netcore.wire import relay as wire
from netcore.wire.addresses import peer_id_for
from netcore.wire.protocol import ProtocolError

log = logging.getLogger("p2pai.relay")

ZAP_DOMAIN = b"p2pai"
PUSH_DELAY_S = 0.02
"""Registry changes within this are sent together."""
SWEEP_S = 1.0
HOUR_S = 3600.0


class RelayError(Exception):
    """The relay cannot start; one line that says what to do."""


@dataclass(slots=True)
class Reservation:
    key: str
    rid: bytes
    net: str
    name: str
    caps: list[str]
    expires: float
    since: float
    circuits: int = 0
    """Circuits this reservation takes part in (open or being set up)."""
    window_start: float = 0.0
    window_bytes: int = 0


@dataclass(slots=True)
class Pending:
    requester: str
    target: str
    created: float
    halves: dict[bytes, Stream] = field(default_factory=dict)
    tokens: tuple[bytes, bytes] = (b"", b"")


@dataclass(slots=True)
class RelayCounters:
    reservations_made: int = 0
    reservations_refused: int = 0
    reservations_expired: int = 0
    circuits_opened: int = 0
    circuits_refused: int = 0
    circuits_failed: int = 0
    """Set up but never joined (a half missing by ``pending_seconds``)."""
    circuits_closed: dict[str, int] = field(default_factory=dict)
    """By why they ended: eof, limit, timeout, error."""
    bytes_relayed: int = 0
    links_refused: int = 0
    bad_preambles: int = 0
    control_errors: int = 0


class RelayServer:
    """Runs on one asyncio loop; :meth:`start`, then :meth:`close`."""

    def __init__(
        self,
        identity: Identity,
        limits: RelayLimits | None = None,
        mangle: Callable[[], Callable[[bytes], bytes]] | None = None,
    ) -> None:
        self.identity = identity
        self.limits = limits or RelayLimits()
        self.mangle = mangle
        """Makes a hostile relay's byte rewriter for each circuit (tests/flipping_relay.py only)."""
        self.counters = RelayCounters()
        self.reservations: dict[str, Reservation] = {}
        self.by_rid: dict[bytes, str] = {}
        self.nets: dict[str, set[str]] = {}
        self.pending: dict[bytes, Pending] = {}
        """Token -> the circuit it opens (both of its tokens map to the same Pending)."""
        self.open_circuits = 0
        self.links = 0
        """Public TCP connections open that are not part of a circuit."""
        self.endpoint = ""
        self.host = ""
        self.port = 0
        self._ctx: zmq.Context[Any] | None = None
        self._zap: ZapHandler | None = None
        self._router: zmq.Socket[Any] | None = None
        self._pump: Pump | None = None
        self._inner_port = 0
        self._observed: dict[str, str] = {}
        """Inner source address (127.x.y.z) of a control link -> ``host:port`` the relay sees
        its node at, for ``relay_reserved``'s ``observed`` (what ``p2pai doctor`` reads)."""
        self._loopbacks = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty: set[str] = set()
        self._push_handle: asyncio.TimerHandle | None = None
        self.started_at = 0.0

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, host: str, port: int) -> str:
        loop = asyncio.get_running_loop()
        self._ctx = zmq.Context()
        self._zap = ZapHandler(self._ctx, ZAP_DOMAIN, lambda domain, key: True)
        self._zap.start(loop)
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.SNDHWM, 1000)
        router.setsockopt(zmq.RCVHWM, 1000)
        router.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.CURVE_SERVER, 1)
        router.setsockopt(zmq.CURVE_PUBLICKEY, self.identity.public_key)
        router.setsockopt(zmq.CURVE_SECRETKEY, self.identity.secret_key)
        router.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        self._inner_port = router.bind_to_random_port("tcp://127.0.0.1")
        self._router = router
        self._pump = Pump(loop, router, self._on_control, copy=False)
        try:
            self._server = await asyncio.start_server(
                self._accepted, host, port, reuse_address=True, backlog=1024
            )
        except OSError as exc:
            await self.close()
            raise RelayError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                "choose another --port (0 picks a free one) or --interface"
            ) from None
        sock = self._server.sockets[0].getsockname()
        self.host, self.port = str(sock[0]), int(sock[1])
        self.endpoint = f"tcp://{self.host}:{self.port}"
        self.started_at = time.monotonic()
        self._spawn(self._sweep_loop())
        log.info("relay %s serving on %s", self.identity.peer_id, self.address)
        return self.endpoint

    @property
    def address(self) -> str:
        """What nodes give as ``--relay``."""
        return f"{self.endpoint}#{self.identity.public_text}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for pending in list(self.pending.values()):
            for stream in pending.halves.values():
                stream[1].close()
        self.pending.clear()
        if self._push_handle is not None:
            self._push_handle.cancel()
        if self._pump is not None:
            self._pump.close()
        if self._router is not None:
            self._router.close(linger=0)
        if self._zap is not None:
            self._zap.close()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- the public port -----------------------------------------------------------------

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback: the connection's task is ours (tracked, cancelled at close), not
        # one asyncio makes and logs when it is cancelled.
        self._spawn(self._on_connection(reader, writer))

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.links >= self.limits.links_cap:
            self.counters.links_refused += 1
            writer.close()
            return
        self.links += 1
        joined = False
        try:
            try:
                first = await asyncio.wait_for(reader.readexactly(1), self.limits.handshake_seconds)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
                return
            if first[0] == wire.ZMTP_SIGNATURE:
                await self._control_link(first, (reader, writer))
                return
            try:
                rest = await asyncio.wait_for(
                    reader.readexactly(wire.PREAMBLE_LEN - 1), self.limits.handshake_seconds
                )
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
                return
            token = wire.parse_preamble(first + rest)
            pending = self.pending.get(token) if token is not None else None
            if token is None or pending is None or token in pending.halves:
                self.counters.bad_preambles += 1
                return
            pending.halves[token] = (reader, writer)
            joined = True
            if len(pending.halves) == 2:
                self._join(pending)
        finally:
            if not joined:
                self.links -= 1
                await close_stream(writer)

    async def _control_link(self, first: bytes, outer: Stream) -> None:
        """A node's ZMTP link: joined to our CURVE ROUTER on 127.0.0.1 (no limits but the
        ROUTER's frame size; ZeroMQ heartbeats keep it alive or close it)."""
        peer = outer[1].get_extra_info("peername")
        observed = ""
        if isinstance(peer, tuple) and len(peer) >= 2:
            host = str(peer[0])
            observed = f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
        source = self._next_loopback()
        try:
            try:
                inner = await asyncio.open_connection(
                    "127.0.0.1", self._inner_port, local_addr=(source, 0)
                )
            except OSError:  # not every system routes all of 127/8 to lo (macOS)
                source = ""
                inner = await asyncio.open_connection("127.0.0.1", self._inner_port)
        except OSError:
            return
        if source and observed:
            self._observed[source] = observed
        try:
            inner[1].write(first)
            await splice(outer, inner)
        finally:
            if source:
                self._observed.pop(source, None)

    def _next_loopback(self) -> str:
        """A loopback source address of its own for each control link (127.1.0.1 on), so
        the ROUTER's ``Peer-Address`` of a message tells which outer connection it came on."""
        n = self._loopbacks
        self._loopbacks = (n + 1) % (250 * 256 * 254)
        return f"127.{1 + n // (256 * 254)}.{(n // 254) % 256}.{1 + n % 254}"

    def _join(self, pending: Pending) -> None:
        for token in pending.tokens:
            self.pending.pop(token, None)
        a, b = (pending.halves[t] for t in pending.tokens)
        self.links -= 2
        self.open_circuits += 1
        self.counters.circuits_opened += 1
        budget = self.limits.circuit_bytes
        now = time.monotonic()
        for key in (pending.requester, pending.target):
            res = self.reservations.get(key)
            if res is not None:
                self._window(res, now)
                budget = min(budget, max(0, self.limits.peer_bytes_per_hour - res.window_bytes))
        self._spawn(self._run_circuit(pending, a, b, budget))

    def _count(self, n: int) -> None:
        self.counters.bytes_relayed += n  # live: /metrics shows bytes as they are copied

    async def _run_circuit(self, pending: Pending, a: Stream, b: Stream, budget: int) -> None:
        result = SpliceResult(ended="error")
        try:
            result = await splice(
                a,
                b,
                max_bytes=budget,
                max_seconds=self.limits.circuit_seconds,
                on_bytes=self._count,
                mangle=self.mangle() if self.mangle is not None else None,
            )
        finally:
            self.open_circuits -= 1
            closed = self.counters.circuits_closed
            closed[result.ended] = closed.get(result.ended, 0) + 1
            for key in (pending.requester, pending.target):
                res = self.reservations.get(key)
                if res is not None:
                    res.circuits = max(0, res.circuits - 1)
                    res.window_bytes += result.copied
            log.debug(
                "circuit %s -> %s closed (%s, %d bytes)",
                peer_id_for(pending.requester),
                peer_id_for(pending.target),
                result.ended,
                result.copied,
            )

    # --- control messages ----------------------------------------------------------------

    def _send(self, rid: bytes, msg: dict[str, Any]) -> bool:
        if self._router is None:
            return False
        try:
            self._router.send_multipart([rid, wire.encode(msg)], zmq.DONTWAIT)
        except zmq.ZMQError:
            return False  # gone (ROUTER_MANDATORY) or its queue is full
        finally:
            if self._pump is not None:
                self._pump.after_send()
        return True

    def _on_control(self, frames: list[Any]) -> None:
        if len(frames) != 2:
            return
        rid = frames[0].bytes
        try:
            key = str(frames[1].get("User-Id") or "")
        except zmq.ZMQError:
            key = ""
        if not key:
            return
        try:
            msg = wire.decode(frames[1].buffer)
        except ProtocolError as exc:
            self.counters.control_errors += 1
            self._send(rid, wire.error(exc.code, exc.message, exc.req_id))
            return
        t = msg["t"]
        if t == wire.RESERVE:
            try:
                source = str(frames[1].get("Peer-Address") or "")
            except zmq.ZMQError:
                source = ""
            self._reserve(rid, key, msg, self._observed.get(source, ""))
        elif t == wire.CONNECT:
            self._connect(rid, key, msg)
        elif t == wire.LEAVE:
            res = self.reservations.get(key)
            if res is not None and res.rid == rid:
                self._drop(key)
        else:
            self.counters.control_errors += 1

    def _reserve(self, rid: bytes, key: str, msg: dict[str, Any], observed: str = "") -> None:
        now = time.monotonic()
        res = self.reservations.get(key)
        if res is None:
            if len(self.reservations) >= self.limits.max_reservations:
                self.counters.reservations_refused += 1
                self._send(
                    rid,
                    wire.error(
                        "overloaded",
                        f"relay full: it holds {len(self.reservations)} reservations, its "
                        "limit (--max-reservations); try another relay",
                        msg["id"],
                    ),
                )
                return
            res = Reservation(key, rid, msg["net"], msg["name"], msg["caps"], 0.0, now)
            res.window_start = now
            self.reservations[key] = res
            self.counters.reservations_made += 1
            log.info("reservation for %s (%s) on %r", peer_id_for(key), res.name, res.net)
            self._dirty.add(res.net)
        elif res.net != msg["net"] or res.caps != msg["caps"] or res.name != msg["name"]:
            self._unlist(res)
            self._dirty.update({res.net, msg["net"]})
            res.net, res.caps, res.name = msg["net"], msg["caps"], msg["name"]
        if res.rid != rid:
            self.by_rid.pop(res.rid, None)
            res.rid = rid  # the node reconnected: its new control link
        self.by_rid[rid] = key
        self.nets.setdefault(res.net, set()).add(key)
        res.expires = now + self.limits.reservation_ttl
        reply: dict[str, Any] = {
            "t": wire.RESERVED,
            "id": msg["id"],
            "ttl": self.limits.reservation_ttl,
            "peers": self.registry(res.net, key),
            "limits": self.limits.public(),
        }
        if observed:
            reply["observed"] = observed  # optional: older nodes ignore it
        self._send(rid, reply)
        self._schedule_push()

    def _connect(self, rid: bytes, key: str, msg: dict[str, Any]) -> None:
        me = self.reservations.get(key)
        rid_in = msg["id"]
        if me is None or me.rid != rid:
            self.counters.circuits_refused += 1
            self._send(rid, wire.error("reservation_required", "reserve first", rid_in))
            return
        target = self.reservations.get(msg["key"])
        if target is None or target.net != me.net or target.key == key:
            self.counters.circuits_refused += 1
            self._send(
                rid,
                wire.error(
                    "unknown_peer", f"no reservation for {peer_id_for(msg['key'])} here", rid_in
                ),
            )
            return
        lim = self.limits
        busy = next((r for r in (me, target) if r.circuits >= lim.circuits_per_peer), None)
        if busy is not None:
            self.counters.circuits_refused += 1
            self._send(
                rid,
                wire.error(
                    "limit",
                    f"{peer_id_for(busy.key)} takes part in {busy.circuits} circuits, "
                    "the relay's limit per node",
                    rid_in,
                ),
            )
            return
        if self.open_circuits + len(self.pending) // 2 >= lim.max_circuits:
            self.counters.circuits_refused += 1
            self._send(rid, wire.error("overloaded", "relay full: too many circuits", rid_in))
            return
        now = time.monotonic()
        for res in (me, target):
            self._window(res, now)
            if res.window_bytes >= lim.peer_bytes_per_hour:
                self.counters.circuits_refused += 1
                self._send(
                    rid,
                    wire.error(
                        "limit",
                        f"{peer_id_for(res.key)} relayed {res.window_bytes} bytes this hour, "
                        "the relay's limit per node",
                        rid_in,
                    ),
                )
                return
        mine, theirs = secrets.token_bytes(wire.TOKEN_LEN), secrets.token_bytes(wire.TOKEN_LEN)
        if not self._send(target.rid, {"t": wire.INCOMING, "token": theirs, "key": key}):
            self.counters.circuits_refused += 1
            self._drop(target.key)
            self._send(rid, wire.error("unknown_peer", "that node's control link is gone", rid_in))
            return
        pending = Pending(key, target.key, now, tokens=(mine, theirs))
        self.pending[mine] = self.pending[theirs] = pending
        me.circuits += 1
        target.circuits += 1
        self._send(rid, {"t": wire.CIRCUIT, "id": rid_in, "token": mine})

    def _window(self, res: Reservation, now: float) -> None:
        if now - res.window_start >= HOUR_S:
            res.window_start, res.window_bytes = now, 0

    # --- the registry --------------------------------------------------------------------

    def registry(self, net: str, but: str = "") -> list[dict[str, Any]]:
        """The reserved nodes of ``net`` (at most wire.MAX_PEERS), ``but`` left out."""
        found = []
        for key in self.nets.get(net, ()):
            res = self.reservations[key]
            if key != but:
                found.append({"key": key, "name": res.name, "caps": res.caps})
            if len(found) >= wire.MAX_PEERS:
                break
        return found

    def _unlist(self, res: Reservation) -> None:
        members = self.nets.get(res.net)
        if members is not None:
            members.discard(res.key)
            if not members:
                del self.nets[res.net]

    def _drop(self, key: str) -> None:
        res = self.reservations.pop(key, None)
        if res is None:
            return
        self.by_rid.pop(res.rid, None)
        self._unlist(res)
        self._dirty.add(res.net)
        self._schedule_push()

    def _schedule_push(self) -> None:
        if self._dirty and self._push_handle is None:
            self._push_handle = asyncio.get_running_loop().call_later(PUSH_DELAY_S, self._push)

    def _push(self) -> None:
        self._push_handle = None
        dirty, self._dirty = self._dirty, set()
        for net in dirty:
            for key in list(self.nets.get(net, ())):
                res = self.reservations.get(key)
                if res is None:
                    continue
                msg = {"t": wire.PEERS, "net": net, "peers": self.registry(net, key)}
                if not self._send(res.rid, msg):
                    self._drop(key)

    # --- expiry --------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        """Expire reservations not renewed and circuits whose halves did not both come."""
        for key, res in list(self.reservations.items()):
            if res.expires < now:
                self.counters.reservations_expired += 1
                log.info("reservation for %s expired", peer_id_for(key))
                self._drop(key)
        for token, pending in list(self.pending.items()):
            if now - pending.created <= self.limits.pending_seconds:
                continue
            if token != pending.tokens[0]:
                continue  # each circuit once, by its first token
            for t in pending.tokens:
                self.pending.pop(t, None)
            self.counters.circuits_failed += 1
            for stream in pending.halves.values():
                self.links -= 1
                stream[1].close()
            for key in (pending.requester, pending.target):
                held = self.reservations.get(key)
                if held is not None:
                    held.circuits = max(0, held.circuits - 1)

    def status(self) -> dict[str, Any]:
        return {
            "reservations": len(self.reservations),
            "networks": len(self.nets),
            "circuits_open": self.open_circuits,
            "circuits_pending": len(self.pending) // 2,
            "links": self.links,
        }
