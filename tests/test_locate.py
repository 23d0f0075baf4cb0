"""An unknown model is one line once the swarm has answered (netcore.models.locate)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from netcore.models.locate import (
    ModelSearch,
    UnknownModel,
    find_workers,
    peer_signature,
    unknown_model_line,
)
from netcore.models.registry import TensorSpec
from netcore.net.peers import Peer, PeerState


def entry(name: str, shape: list[int] | None = None) -> dict[str, object]:
    return {
        "name": name,
        "sha256": "0" * 64,
        "size": 1,
        "inputs": [{"name": "input", "dtype": "float32", "shape": shape or [-1, 64]}],
        "outputs": [{"name": "label"}],
    }


def worker(name: str, *models: str, greeted: bool = True) -> Peer:
    return Peer(
        peer_id=f"{name}-id-0123456789",
        key="k",
        name=name,
        caps=["infer"],
        models=[entry(m) for m in models],
        greeted=greeted,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nowhere_only_after_a_worker_answered_and_the_swarm_settled() -> None:
    clock = Clock()
    search = ModelSearch("nosuchmodel", settle_s=1.5, clock=clock)
    assert not search.nowhere([])  # no peer yet: keep waiting
    clock.now = 30.0
    assert not search.nowhere([])
    peers = [worker("w1", "digits")]
    assert not search.nowhere(peers)  # a change: the settle time starts again
    clock.now = 31.0
    assert not search.nowhere(peers)
    clock.now = 31.5
    assert search.nowhere(peers)


def test_a_peer_still_connecting_or_a_new_model_list_keeps_the_search_open() -> None:
    clock = Clock()
    search = ModelSearch("wine", settle_s=1.0, clock=clock)
    peers = [worker("w1", "digits"), worker("w2", greeted=False)]
    search.nowhere(peers)
    clock.now = 5.0
    assert not search.nowhere(peers)  # w2 has not greeted us: it may hold wine
    peers[1].greeted = True
    peers[1].models = [entry("wine")]
    assert not search.nowhere(peers)
    clock.now = 10.0
    assert not search.nowhere(peers)  # w2 holds it
    peers[1].state = PeerState.EVASIVE
    assert not search.nowhere(peers)  # changed
    clock.now = 11.0
    assert search.nowhere(peers)  # the one holding it is gone


def test_a_client_peer_is_not_a_worker() -> None:
    clock = Clock()
    search = ModelSearch("digits", settle_s=0.0, clock=clock)
    client = worker("c1", "digits")
    client.caps = []
    search.nowhere([client])
    assert not search.nowhere([client])  # no worker answered yet


def test_the_line_names_what_this_node_and_its_peers_hold() -> None:
    peers = [worker("w1", "digits", "iris"), worker("w2", "digits"), worker("", "wine")]
    assert unknown_model_line("nosuchmodel", ["iris", "digits"], peers) == (
        "unknown model 'nosuchmodel': this node holds digits, iris; "
        "peers hold digits (w1, w2), iris (w1), wine (-id-0123)"
    )
    assert (
        unknown_model_line("x", [], [])
        == "unknown model 'x': this node holds none; peers hold none"
    )


class Swarm:
    """The two things find_workers asks of a node, over a list of peers."""

    def __init__(self, peers: list[Peer]) -> None:
        self.peers: Iterable[Peer] = peers
        self.waits = 0

    async def wait_for_peers(
        self, count: int, timeout: float, kind: str | None = "infer", model: str | None = None
    ) -> list[Peer]:
        self.waits += 1
        await asyncio.sleep(min(timeout, 0.01))
        return [p for p in self.peers if p.greeted and (model is None or p.has_model(model))]


async def test_find_workers_fails_fast_on_a_model_nowhere() -> None:
    swarm = Swarm([worker("w1", "digits")])
    with pytest.raises(UnknownModel, match=r"unknown model 'nosuchmodel'.*digits \(w1\)"):
        await find_workers(swarm, 1, 3600.0, "nosuchmodel", ["digits"], False, settle_s=0.05)


async def test_find_workers_waits_out_the_timeout_with_no_peer() -> None:
    swarm = Swarm([])
    assert await find_workers(swarm, 1, 0.3, "digits", [], False, settle_s=0.0) == []
    assert swarm.waits > 1


async def test_find_workers_returns_holders_and_skips_the_search_for_a_held_model() -> None:
    w1 = worker("w1", "digits")
    assert await find_workers(Swarm([w1]), 1, 5.0, "digits", [], False) == [w1]
    w2 = worker("w2", "iris")
    assert await find_workers(Swarm([w2]), 1, 5.0, "mine", ["mine"], True) == [w2]


def test_peer_signature() -> None:
    w1, w2 = worker("w1", "digits"), worker("w2", "digits")
    assert peer_signature([w1, w2], "digits") == [TensorSpec("input", "float32", (-1, 64))]
    assert peer_signature([w1], "iris") is None
    w2.models = [entry("digits", [-1, 32])]
    assert peer_signature([w1, w2], "digits") is None  # versions that differ: cannot check
