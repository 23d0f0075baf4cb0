"""Pings on the shared beat (Node._ping_loop): one ping per pair and second, sent on the
half-second beats of the wall clock, and no peer turns evasive. Real nodes in this process,
on 127.0.0.1 and a private network name."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from netcore.config.settings import Config
from netcore.node import Node

pytestmark = pytest.mark.integration


async def test_pings_go_out_on_the_beat_once_per_pair(tmp_path: Path) -> None:
    network = f"beat-{uuid.uuid4().hex[:10]}"
    nodes = [
        Node(
            Config(
                interfaces=("127.0.0.1",),
                network=network,
                name=f"b{i}",
                data_dir=tmp_path / f"b{i}",
            )
        )
        for i in range(3)
    ]
    try:
        for node in nodes:
            await node.start()
        deadline = time.monotonic() + 30
        while not all(
            len([p for p in node.peers if p.greeted]) == 2 for node in nodes
        ):  # a hang guard, normally well under a second
            assert time.monotonic() < deadline, "no full mesh of 3"
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.5)  # let the start-up pings pass
        sent_at: list[float] = []
        for node in nodes:
            send = node.membership.send_request

            def spy(peer_id: str, msg: Any, send: Any = send) -> bool:
                if msg.get("t") == "ping":
                    sent_at.append(time.time())
                return bool(send(peer_id, msg))

            node.membership.send_request = spy  # type: ignore[method-assign]
        await asyncio.sleep(3.2)  # six beats
        # One ping per pair a second (3 pairs, 3 seconds; one spare for a beat at the edge),
        # never both ends of a pair on the same beat...
        assert 8 <= len(sent_at) <= 10, len(sent_at)
        # ...and each on a half-second beat of the wall clock (the loop may run a little late).
        half = nodes[0].config.ping_interval / 2
        late = [round(t % half, 3) for t in sent_at if t % half > 0.08]
        assert not late, late
        for node in nodes:
            assert all(p.state.value == "alive" for p in node.peers), [
                (p.name, p.state) for p in node.peers
            ]
    finally:
        for node in nodes:
            await node.stop()


async def test_a_new_peer_is_pinged_on_join_so_both_ends_know_its_rtt(tmp_path: Path) -> None:
    """The beat pings only silent peers (here: none for a minute), and of a pair only one end;
    the ping each node sends when a peer answers its hello gives both ends an RTT at once."""
    from model_helpers import loopback_config, running, unique_network

    network = unique_network("first-rtt")
    slow_beat = {"ping_interval": 60.0, "evasive_after": 120.0, "expired_after": 240.0}
    configs = [loopback_config(tmp_path, name, network, **slow_beat) for name in ("r1", "r2")]
    async with running(*configs) as nodes:
        a, b = nodes
        sent = [n.counters["pings_sent"] for n in nodes]
        assert min(sent) >= 1, "each pings the other when it answers our hello"
        deadline = time.monotonic() + 15  # a hang guard: the beat would take a minute
        while not all(p.rtt is not None for n in nodes for p in n.peers):
            assert time.monotonic() < deadline, "no RTT after the first ping exchange"
            await asyncio.sleep(0.02)
        for node, other in ((a, b), (b, a)):
            peer = node.peers.get(other.peer_id)
            assert peer is not None and peer.rtt is not None and peer.rtt > 0
