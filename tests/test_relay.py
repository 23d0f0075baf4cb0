"""The relay on 127.0.0.1: the splice, reservations, the registry, circuits and their limits.

Real sockets throughout: a :class:`RelayServer` on the test's loop, and raw ZeroMQ DEALERs
(CURVE clients with their own keys) speaking the control messages of netcore.wire.relay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
import zmq
import zmq.asyncio

from netcore.net.identity import Identity
from netcore.net.relay_limits import RelayLimits
from netcore.net.relay_server import RelayServer
from netcore.net.splice import splice
from netcore.wire import relay as wire

NET = "relay-unit"


def new_identity() -> Identity:
    public, secret = zmq.curve_keypair()
    return Identity(public, secret)


class RawNode:
    """A node's control link, by hand: a CURVE DEALER to the relay."""

    def __init__(self, ctx: zmq.asyncio.Context, relay: RelayServer) -> None:
        self.identity = new_identity()
        self.key = self.identity.public_text
        self.relay = relay
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.CURVE_SERVERKEY, relay.identity.public_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.identity.public_key)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.identity.secret_key)
        sock.connect(relay.endpoint)
        self.sock = sock
        self.notices: list[dict[str, Any]] = []

    async def ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        rid = bytes(range(16))
        await self.sock.send(msgpack.packb({"v": 1, "id": rid, **msg}))
        while True:
            reply = await self.recv()
            if reply.get("id") == rid:
                return reply
            self.notices.append(reply)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.sock.recv(), timeout)
        return dict(msgpack.unpackb(frame, raw=False))

    async def notice(self, t: str, timeout: float = 5.0) -> dict[str, Any]:
        for i, msg in enumerate(self.notices):
            if msg["t"] == t:
                return self.notices.pop(i)
        while True:
            msg = await self.recv(timeout)
            if msg["t"] == t:
                return msg
            self.notices.append(msg)

    async def reserve(self, net: str = NET, caps: tuple[str, ...] = ("infer",)) -> dict[str, Any]:
        return await self.ask({"t": wire.RESERVE, "net": net, "name": "raw", "caps": list(caps)})

    async def data(self, token: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.relay.host, self.relay.port)
        writer.write(wire.preamble(token))
        await writer.drain()
        return reader, writer


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    yield context
    context.destroy(linger=0)


async def started(limits: RelayLimits | None = None) -> RelayServer:
    server = RelayServer(new_identity(), limits)
    await server.start("127.0.0.1", 0)
    return server


async def circuit(a: RawNode, b: RawNode) -> tuple[Any, Any]:
    """A asks for a circuit to B; both open their halves: the two data streams."""
    reply = await a.ask({"t": wire.CONNECT, "key": b.key})
    assert reply["t"] == wire.CIRCUIT, reply
    incoming = await b.notice(wire.INCOMING)
    assert incoming["key"] == a.key
    return await a.data(reply["token"]), await b.data(incoming["token"])


# --- the splice --------------------------------------------------------------------------


async def pair() -> tuple[Any, Any, asyncio.base_events.Server]:
    """Two connected streams over 127.0.0.1: (client side, server side)."""
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: got.set_result((r, w)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await asyncio.open_connection("127.0.0.1", port)
    return client, await got, server


async def test_splice_copies_both_ways_and_stops_at_its_byte_limit() -> None:
    (a_out, a_in, s1), (b_out, b_in, s2) = await pair(), await pair()
    seen: list[int] = []
    job = asyncio.ensure_future(splice(a_in, b_in, max_bytes=10_000, on_bytes=seen.append))
    a_out[1].write(b"x" * 3000)
    assert await b_out[0].readexactly(3000) == b"x" * 3000
    b_out[1].write(b"y" * 2000)
    assert await a_out[0].readexactly(2000) == b"y" * 2000
    a_out[1].write(b"z" * 8000)  # over the limit: 5000 more pass, then both sides close
    got = await b_out[0].read()
    while chunk := await b_out[0].read():
        got += chunk
    result = await asyncio.wait_for(job, 5)
    assert result.ended == "limit" and result.copied == 10_000
    assert len(got) == 5000 and sum(seen) <= 10_000
    assert await a_out[0].read() == b""  # closed on the other side too
    for s in (s1, s2):
        s.close()


async def test_splice_ends_after_its_time_limit_and_on_eof() -> None:
    (a_out, a_in, s1), (b_out, b_in, s2) = await pair(), await pair()
    result = await asyncio.wait_for(splice(a_in, b_in, max_seconds=0.2), 5)
    assert result.ended == "timeout"
    assert await a_out[0].read() == b"" and await b_out[0].read() == b""
    (c_out, c_in, s3), (_d_out, d_in, s4) = await pair(), await pair()
    job = asyncio.ensure_future(splice(c_in, d_in))
    c_out[1].close()
    assert (await asyncio.wait_for(job, 5)).ended == "eof"
    for s in (s1, s2, s3, s4):
        s.close()


async def test_splice_mangle_rewrites_bytes() -> None:
    (a_out, a_in, s1), (b_out, b_in, s2) = await pair(), await pair()
    flip = lambda data: bytes(x ^ 1 for x in data)  # noqa: E731
    job = asyncio.ensure_future(splice(a_in, b_in, mangle=flip))
    a_out[1].write(b"\x00\x02")
    assert await b_out[0].readexactly(2) == b"\x01\x03"
    a_out[1].close()
    await asyncio.wait_for(job, 5)
    for s in (s1, s2):
        s.close()


# --- the relay ---------------------------------------------------------------------------


async def test_registry_lists_reserved_nodes_of_the_network_and_pushes_changes(
    ctx: zmq.asyncio.Context,
) -> None:
    relay = await started()
    try:
        a, b, other = RawNode(ctx, relay), RawNode(ctx, relay), RawNode(ctx, relay)
        first = await a.reserve()
        assert first["t"] == wire.RESERVED and first["peers"] == []
        assert first["limits"]["max_reservations"] == 1024
        assert (await other.reserve(net="another-net"))["peers"] == []
        second = await b.reserve()
        assert [e["key"] for e in second["peers"]] == [a.key]
        pushed = await a.notice(wire.PEERS)
        assert [e["key"] for e in pushed["peers"]] == [b.key]  # never our own, never other nets
        await b.sock.send(msgpack.packb({"v": 1, "t": wire.LEAVE}))
        assert (await a.notice(wire.PEERS))["peers"] == []
    finally:
        await relay.close()


async def test_reservations_expire_unless_renewed(ctx: zmq.asyncio.Context) -> None:
    relay = await started(RelayLimits(reservation_ttl=5.0))
    try:
        a, b = RawNode(ctx, relay), RawNode(ctx, relay)
        await a.reserve()
        await b.reserve()
        await a.notice(wire.PEERS)
        relay.reservations[b.key].expires = 0.0  # b stopped renewing; a renewed just now
        relay.sweep(time.monotonic())
        assert list(relay.reservations) == [a.key]
        assert (await a.notice(wire.PEERS))["peers"] == []
        assert relay.counters.reservations_expired == 1
    finally:
        await relay.close()


async def test_a_full_relay_refuses_new_reservations_in_one_line(
    ctx: zmq.asyncio.Context,
) -> None:
    relay = await started(RelayLimits(max_reservations=3))
    try:
        nodes = [RawNode(ctx, relay) for _ in range(6)]
        replies = [await n.reserve() for n in nodes]
        assert [r["t"] for r in replies[:3]] == [wire.RESERVED] * 3
        for refused in replies[3:]:
            assert refused["t"] == "error" and refused["code"] == "overloaded"
            assert "relay full" in refused["message"] and "\n" not in refused["message"]
        assert len(relay.reservations) == 3  # bounded
        assert relay.counters.reservations_refused == 3
        assert (await nodes[0].reserve())["t"] == wire.RESERVED  # renewing is never refused
    finally:
        await relay.close()


async def test_circuit_splices_the_two_halves(ctx: zmq.asyncio.Context) -> None:
    relay = await started()
    try:
        a, b = RawNode(ctx, relay), RawNode(ctx, relay)
        await a.reserve()
        await b.reserve()
        (ar, aw), (br, bw) = await circuit(a, b)
        aw.write(b"hello from a")
        assert await asyncio.wait_for(br.readexactly(12), 5) == b"hello from a"
        bw.write(b"and back")
        assert await asyncio.wait_for(ar.readexactly(8), 5) == b"and back"
        assert relay.open_circuits == 1 and relay.counters.circuits_opened == 1
        aw.close()
        assert await asyncio.wait_for(br.read(), 5) == b""
        for _ in range(50):
            if relay.open_circuits == 0:
                break
            await asyncio.sleep(0.02)
        assert relay.open_circuits == 0 and relay.counters.bytes_relayed == 20
        assert relay.reservations[a.key].circuits == 0
    finally:
        await relay.close()


async def test_circuit_limits_and_refusals(ctx: zmq.asyncio.Context) -> None:
    relay = await started(RelayLimits(circuits_per_peer=1, circuit_bytes=100))
    try:
        a, b, c, stranger = (RawNode(ctx, relay) for _ in range(4))
        for n in (a, b, c):
            await n.reserve()
        await stranger.reserve(net="elsewhere")
        no = await stranger.ask({"t": wire.CONNECT, "key": a.key})
        assert no["code"] == "unknown_peer"  # another network's nodes are not reachable
        unreserved = RawNode(ctx, relay)
        assert (await unreserved.ask({"t": wire.CONNECT, "key": a.key}))[
            "code"
        ] == "reservation_required"
        (_ar, aw), (br, _bw) = await circuit(a, b)
        busy = await c.ask({"t": wire.CONNECT, "key": b.key})
        assert busy["code"] == "limit" and "circuits" in busy["message"]
        aw.write(b"x" * 500)  # the circuit carries 100 bytes, then closes
        got = await asyncio.wait_for(br.read(), 5)
        while chunk := await asyncio.wait_for(br.read(), 5):
            got += chunk
        assert len(got) == 100
        for _ in range(50):
            if relay.reservations[b.key].circuits == 0:
                break
            await asyncio.sleep(0.02)
        assert relay.counters.circuits_closed.get("limit") == 1
        assert (await c.ask({"t": wire.CONNECT, "key": b.key}))["t"] == wire.CIRCUIT
    finally:
        await relay.close()


async def test_bad_preambles_and_half_circuits_are_dropped(ctx: zmq.asyncio.Context) -> None:
    relay = await started()
    try:
        reader, writer = await asyncio.open_connection(relay.host, relay.port)
        writer.write(wire.preamble(b"\x00" * 16))  # a token nobody was given
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert relay.counters.bad_preambles == 1
        a, b = RawNode(ctx, relay), RawNode(ctx, relay)
        await a.reserve()
        await b.reserve()
        reply = await a.ask({"t": wire.CONNECT, "key": b.key})
        half = await a.data(reply["token"])  # b never opens its half
        for _ in range(50):
            if relay.links >= 3:
                break
            await asyncio.sleep(0.02)
        relay.sweep(time.monotonic() + relay.limits.pending_seconds + 1)
        assert await asyncio.wait_for(half[0].read(), 5) == b""
        assert relay.pending == {} and relay.counters.circuits_failed == 1
        assert relay.reservations[a.key].circuits == 0
    finally:
        await relay.close()


async def test_garbage_control_messages_get_one_line_errors(ctx: zmq.asyncio.Context) -> None:
    relay = await started()
    try:
        a = RawNode(ctx, relay)
        bad = await a.ask({"t": wire.RESERVE, "net": 5, "name": "x", "caps": []})
        assert bad["t"] == "error" and bad["code"] == "bad_request"
        odd = await a.ask({"t": "task"})
        assert odd["code"] == "unsupported"
        assert relay.reservations == {}
    finally:
        await relay.close()


async def test_reserved_says_where_the_relay_sees_each_node_from(
    ctx: zmq.asyncio.Context,
) -> None:
    relay = await started()
    try:
        a, b = RawNode(ctx, relay), RawNode(ctx, relay)
        seen = [wire.observed_address(await node.reserve()) for node in (a, b)]
        assert all(s is not None and s[0] == "127.0.0.1" for s in seen), seen
        assert seen[0] != seen[1]  # each control link's own outer port, not the inner one
        again = wire.observed_address(await a.reserve())
        assert again == seen[0]
    finally:
        await relay.close()


def test_observed_address_is_a_checked_claim() -> None:
    def reserved(observed: object) -> dict[str, Any]:
        msg = {"v": 1, "t": wire.RESERVED, "id": bytes(16), "ttl": 30, "peers": [],
               "observed": observed}  # fmt: skip
        return wire.decode(msgpack.packb(msg))

    assert wire.observed_address(reserved("198.51.100.4:53211")) == ("198.51.100.4", 53211)
    assert wire.observed_address(reserved("[2001:db8::1]:7400")) == ("2001:db8::1", 7400)
    for bad in ("nonsense", "1.2.3.4:0", "1.2.3.4:99999", "host.example:80", "x" * 100, 7):
        assert wire.observed_address(reserved(bad)) is None, bad
    absent = {"v": 1, "t": wire.RESERVED, "id": bytes(16), "ttl": 30, "peers": []}
    assert wire.observed_address(wire.decode(msgpack.packb(absent))) is None
