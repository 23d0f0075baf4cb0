"""Remembered peers and flap damping, with a fake clock (netcore.net.recall)."""

from __future__ import annotations

import itertools

from netcore.net.peers import Peer, PeerTable
from netcore.net.recall import FlapDamper, Recall


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_probes_back_off_and_the_peer_is_forgotten_in_the_end() -> None:
    clock = Clock()
    recall = Recall(forget_after=60, first_probe=1, max_probe_interval=8, clock=clock)
    recall.remember(Peer("p1", "k"))
    probes = []
    for _ in range(70):
        clock.now += 1
        due, gone = recall.due()
        probes.extend(clock.now for _ in due)
        if gone:
            assert gone == ["p1"]
            break
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps[:3] == [2, 4, 8] and set(gaps[3:]) == {8}
    assert "p1" not in recall


def test_recall_hands_the_peer_back_once() -> None:
    recall = Recall(clock=Clock())
    peer = Peer("p1", "k", name="a", endpoints=["tcp://127.0.0.1:5"])
    recall.remember(peer)
    assert recall.recall("p1") is peer
    assert recall.recall("p1") is None
    assert not recall.forget("p1")


def test_capacity_drops_the_oldest() -> None:
    clock = Clock()
    recall = Recall(capacity=2, clock=clock)
    for name in ("a", "b", "c"):
        clock.now += 1
        dropped = recall.remember(Peer(name, "k"))
    assert dropped == ["a"] and len(recall) == 2


def test_one_flap_is_not_damped_but_a_flapping_peer_is_then_reused() -> None:
    clock = Clock()
    damper = FlapDamper(half_life=10, clock=clock)
    assert damper.flap("p") is None
    assert not damper.suppressed("p")
    clock.now += 1
    assert damper.flap("p") is None
    clock.now += 1
    rest = damper.flap("p")
    assert rest is not None and rest > 0
    assert damper.suppressed("p")
    clock.now += rest + 1
    assert not damper.suppressed("p")


def test_suppression_is_bounded() -> None:
    clock = Clock()
    damper = FlapDamper(half_life=10, max_suppress=60, clock=clock)
    for _ in range(100):
        clock.now += 0.1
        damper.flap("p")
    clock.now += 61
    assert not damper.suppressed("p")


def test_a_resting_peer_is_not_offered_as_a_worker() -> None:
    table = PeerTable(clock=Clock())
    peer, _ = table.upsert("p", "k", "mdns", caps=["infer"])
    peer.greeted = True
    assert table.workers() == [peer]
    table.resting = lambda peer_id: peer_id == "p"
    assert table.workers() == []
