"""netcore.net.punch (the connect loop and the token check) on loopback, and the
responder's rules in netcore.net.punching with an in-memory membership."""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace
from typing import Any

import pytest

from netcore.net import punch
from netcore.net.punching import ANSWER_COOLDOWN_S, MAX_ANSWERING, Punching


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.51.100.7:40123", ("198.51.100.7", 40123)),
        ("10.231.100.1:1", ("10.231.100.1", 1)),
        ("[2001:db8::1]:9", ("2001:db8::1", 9)),
        ("127.0.0.1:5000", None),  # loopback: the peer's own machine is not where it is
        ("0.0.0.0:5000", None),
        ("224.0.0.251:5353", None),
        ("255.255.255.255:9", None),
        ("169.254.1.1:9", None),
        ("[::1]:9", None),
        ("[::ffff:127.0.0.1]:9", None),  # IPv4-mapped: judged as the IPv4 address it is
        ("[::ffff:198.51.100.7]:9", ("198.51.100.7", 9)),
        ("240.0.0.1:9", None),  # reserved
        ("198.51.100.7:0", None),
        ("198.51.100.7:70000", None),
        ("198.51.100.7", None),
        ("example.org:80", None),
        ("", None),
    ],
)
def test_parse_addr_takes_only_public_looking_host_port(
    text: str, expected: tuple[str, int] | None
) -> None:
    assert punch.parse_addr(text) == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _pair(token_a: bytes, token_b: bytes) -> tuple[Any, Any]:
    """Initiator and responder over loopback. On loopback a SYN to a port that is not
    listening is refused at once, so the two SYNs of a real simultaneous open cannot cross
    here: the responder listens instead (the netns tests cross real NATs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    a = punch.bound_socket("127.0.0.1")

    async def initiator() -> Any:
        sock = await punch.simultaneous_open(a, server.getsockname()[:2], 3.0)
        return await punch.prove(sock, token_a, initiator=True)

    async def responder() -> Any:
        conn, _ = await asyncio.get_running_loop().sock_accept(server)
        return await punch.prove(conn, token_b, initiator=False)

    try:
        return await asyncio.gather(initiator(), responder(), return_exceptions=True)
    finally:
        server.close()


def test_the_connection_carries_bytes_once_both_ends_showed_the_token() -> None:
    async def run() -> None:
        token = b"t" * punch.TOKEN_LEN
        left, right = await _pair(token, token)
        assert not isinstance(left, BaseException), left
        assert not isinstance(right, BaseException), right
        left[1].write(b"hello through the NATs")
        await left[1].drain()
        assert await right[0].readexactly(22) == b"hello through the NATs"
        for _, writer in (left, right):
            writer.close()

    asyncio.run(run())


def test_a_wrong_token_fails_both_ends() -> None:
    async def run() -> None:
        left, right = await _pair(b"a" * punch.TOKEN_LEN, b"b" * punch.TOKEN_LEN)
        assert isinstance(right, punch.PunchFailed), right  # the responder saw the wrong one
        assert isinstance(left, punch.PunchFailed), left

    asyncio.run(run())


def test_nobody_there_fails_within_the_window() -> None:
    async def run() -> None:
        sock = punch.bound_socket("127.0.0.1")
        started = time.monotonic()
        with pytest.raises(punch.PunchFailed, match="no direct connection"):
            await punch.simultaneous_open(sock, ("127.0.0.1", _free_port()), 0.6)
        assert time.monotonic() - started < 3.0

    asyncio.run(run())


# --- the responder's rules --------------------------------------------------------------


class _Client:
    state, linked, observed = "reserved", True, ("203.0.113.5", 4000)


def _membership(inbound: bool = True) -> Any:
    relaying = SimpleNamespace(clients=[_Client()], inbound=lambda key: inbound)
    return SimpleNamespace(
        config=SimpleNamespace(relays=("tcp://203.0.113.9:7000#key",)),
        relaying=relaying,
        addresses=["127.0.0.1"],
        endpoints=["tcp://127.0.0.1:1"],
        peers={},
        stopping=False,
    )


def _ask(p: Punching, key: str, addr: str) -> dict[str, Any]:
    return p.on_request(key, "peer-" + key, {"id": b"i" * 16, "addr": addr, "token": b"t" * 16})


def test_responder_refuses_what_a_hostile_peer_asks() -> None:
    async def run() -> None:
        p = Punching(_membership(inbound=False))
        reply = _ask(p, "k1", "198.51.100.7:4000")
        assert (reply["t"], reply["code"]) == ("error", "bad_request"), reply  # not relayed

        p = Punching(_membership())
        for addr in ("127.0.0.1:4000", "203.0.113.5:4000", "nonsense", "224.0.0.1:9"):
            reply = _ask(p, "k1", addr)  # loopback, ourselves, garbage, multicast
            assert (reply["t"], reply["code"]) == ("error", "bad_request"), (addr, reply)

        off = Punching(_membership())
        off.enabled = False
        assert _ask(off, "k1", "198.51.100.7:4000")["code"] == "unsupported"
        await p.close()

    asyncio.run(run())


def test_responder_answers_one_punch_per_peer_and_a_few_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(punch, "start_connect", lambda sock, remote: sent.append(remote))

    async def never(*_args: Any, **_kw: Any) -> Any:
        await asyncio.sleep(3600)  # the window: these tests send no packet anywhere

    monkeypatch.setattr(punch, "simultaneous_open", never)

    async def run() -> None:
        p = Punching(_membership())
        first = _ask(p, "k1", "192.0.2.1:4000")
        assert first["t"] == "punch_ok", first
        assert first["addr"].startswith("203.0.113.5:")  # our public host, the bound port
        assert _ask(p, "k1", "192.0.2.1:4001")["code"] == "overloaded"  # one at a time
        for i in range(2, MAX_ANSWERING + 1):
            assert _ask(p, f"k{i}", "192.0.2.1:4000")["t"] == "punch_ok"
        assert _ask(p, "k99", "192.0.2.1:4000")["code"] == "overloaded"  # the cap
        assert p.counters["answered"] == MAX_ANSWERING
        assert p.counters["refused"] == 2
        assert len(sent) == MAX_ANSWERING  # a SYN only for each punch answered
        await p.close()
        # Done answering: still the cooldown for that peer.
        p._answering.clear()
        assert _ask(p, "k1", "192.0.2.1:4000")["code"] == "overloaded"
        p._answered_at["k1"] -= ANSWER_COOLDOWN_S
        assert _ask(p, "k1", "192.0.2.1:4000")["t"] == "punch_ok"
        await p.close()

    asyncio.run(run())
