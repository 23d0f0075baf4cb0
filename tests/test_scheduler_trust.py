"""The scheduler's trust hooks: ``exclude`` (distinct workers), ``gate`` (trust and
reputation steer and filter), ``observe`` (every attempt's fate)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from trust_fakes import INPUTS, FakeSwarm, corrupt, fails, says, silent

from netcore.net.peers import Peer

GUARD_S = 10.0

pytestmark = pytest.mark.usefixtures("no_jitter")


@pytest.fixture
async def swarm() -> AsyncIterator[FakeSwarm]:
    fake = FakeSwarm(default_timeout=0.2)
    yield fake
    fake.close()


async def test_a_shared_exclude_set_spreads_tasks_over_distinct_workers(swarm: FakeSwarm) -> None:
    for name in ("a", "b", "c"):
        swarm.worker(name, says(7), delay=0.01)
    claimed: set[str] = set()
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(swarm.submit("digits", INPUTS, exclude=claimed) for _ in range(3))),
        GUARD_S,
    )
    assert sorted(o.worker for o in outcomes) == ["a", "b", "c"]  # type: ignore[type-var]
    assert claimed == {"a", "b", "c"}


async def test_excluded_workers_are_never_used(swarm: FakeSwarm) -> None:
    swarm.worker("a", says(7))
    outcome = await swarm.submit("digits", INPUTS, exclude={"a"}, deadline=0.2)
    assert not outcome.ok
    assert swarm.tasks_to("a") == 0


async def test_a_retry_never_goes_back_to_an_excluded_worker(swarm: FakeSwarm) -> None:
    swarm.worker("bad", fails("internal"))
    swarm.worker("good", says(7), delay=0.01)
    claimed = {"good"}
    outcome = await swarm.submit("digits", INPUTS, exclude=claimed, deadline=0.3)
    assert not outcome.ok and swarm.tasks_to("good") == 0 and swarm.tasks_to("bad") >= 1


async def test_the_gate_filters_and_weighs_workers(swarm: FakeSwarm) -> None:
    swarm.worker("trusted", says(7))
    swarm.worker("quarantined", says(7))
    swarm.worker("doubtful", says(7))
    factors = {"trusted": 1.0, "quarantined": None, "doubtful": 4.0}
    swarm.scheduler.gate = lambda peer: factors[peer.peer_id]
    assert {p.peer_id for p in swarm.scheduler.candidates("digits", None)} == {
        "trusted",
        "doubtful",
    }
    chosen = swarm.scheduler.choose("digits", None, set())
    assert chosen is not None and chosen.peer_id == "trusted"
    swarm.peers.get("trusted").inflight = 6  # type: ignore[union-attr]  # busy: cost x7
    chosen = swarm.scheduler.choose("digits", None, set())
    assert chosen is not None and chosen.peer_id == "doubtful"
    swarm.peers.get("trusted").inflight = 0  # type: ignore[union-attr]
    for _ in range(5):
        assert (await swarm.submit("digits", INPUTS)).worker == "trusted"
    assert swarm.tasks_to("quarantined") == 0
    outcome = await swarm.submit("digits", INPUTS, pin="quarantined", deadline=0.2)
    assert not outcome.ok and swarm.tasks_to("quarantined") == 0


async def test_every_attempt_is_observed(swarm: FakeSwarm) -> None:
    seen: list[tuple[str, str]] = []

    def observe(peer: Peer, what: str) -> None:
        seen.append((peer.peer_id, what))

    swarm.scheduler.observe = observe
    swarm.worker("ok", says(7))
    swarm.worker("corrupt", corrupt(7))
    swarm.worker("silent", silent)
    swarm.worker("broken", fails("internal"))
    swarm.worker("late", fails("timeout"))
    swarm.worker("busy", fails("overloaded"))
    for name, want in (
        ("ok", "ok"),
        ("corrupt", "corrupt"),
        ("silent", "timeout"),
        ("broken", "failed"),
        ("late", "timeout"),
    ):
        await swarm.submit("digits", INPUTS, pin=name, max_attempts=1, deadline=0.5)
        assert (name, want) in seen, (name, seen)
    await swarm.submit("digits", INPUTS, pin="busy", max_attempts=1, deadline=0.1)
    assert not [s for s in seen if s[0] == "busy"]  # overloaded says nothing of the worker
