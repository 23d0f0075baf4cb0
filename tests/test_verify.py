"""Verified results (netcore.tasks.verify) over a real Scheduler and fake workers: majorities,
disagreement, extra attempts, late votes, spot checks. No sockets, no sleeps but the fakes'."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from trust_fakes import INPUTS, FakeSwarm, corrupt, fails, says, silent

from netcore.tasks.spot_checks import SpotChecker
from netcore.tasks.verify import Verifier, build_verifier, verify_summary
from netcore.tasks.votes import VerifiedOutcome

GUARD_S = 10.0

pytestmark = pytest.mark.usefixtures("no_jitter")


@pytest.fixture
async def swarm() -> AsyncIterator[FakeSwarm]:
    fake = FakeSwarm(default_timeout=0.3)
    yield fake
    fake.close()


async def run(verifier: Verifier, **options: Any) -> VerifiedOutcome:
    outcome = await asyncio.wait_for(verifier.submit("digits", INPUTS, **options), GUARD_S)
    assert isinstance(outcome, VerifiedOutcome)
    return outcome


async def settle(verifier: Verifier) -> None:
    """Let the attempts still running after a vote finish (they are scored too)."""
    while verifier._background:
        await asyncio.gather(*list(verifier._background), return_exceptions=True)


async def test_three_honest_workers_agree(swarm: FakeSwarm) -> None:
    for name in ("a", "b", "c"):
        swarm.worker(name, says(7))
    verifier = Verifier(swarm, redundancy=3)
    outcome = await run(verifier)
    assert outcome.ok and outcome.label == 7
    assert outcome.agreeing >= 2 and outcome.redundancy == 3 and outcome.attempts == 3
    await settle(verifier)
    # Each worker got exactly one attempt: distinct workers.
    assert [swarm.tasks_to(n) for n in ("a", "b", "c")] == [1, 1, 1]
    assert sorted(p for p, c in swarm.trust.records if c == "votes_won") == ["a", "b", "c"]
    assert verifier.stats.accepted == 1 and verifier.stats.votes_lost == 0


async def test_a_liar_is_outvoted_and_loses_its_vote(swarm: FakeSwarm) -> None:
    swarm.worker("liar", says(3))  # answers first
    swarm.worker("h1", says(7), delay=0.01)
    swarm.worker("h2", says(7), delay=0.02)
    verifier = Verifier(swarm, redundancy=3)
    outcome = await run(verifier)
    assert outcome.ok and outcome.label == 7
    assert outcome.worker in ("h1", "h2")
    assert "liar" in outcome.dissenters
    assert swarm.trust.count("liar", "votes_lost") == 1
    assert swarm.trust.count("liar", "votes_won") == 0


async def test_late_attempts_are_scored_after_the_vote(swarm: FakeSwarm) -> None:
    swarm.worker("h1", says(7))
    swarm.worker("h2", says(7))
    swarm.worker("late-liar", says(1), delay=0.05)
    verifier = Verifier(swarm, redundancy=3)
    outcome = await run(verifier)
    assert outcome.ok and outcome.agreeing == 2 and sorted(outcome.voters) == ["h1", "h2"]
    assert swarm.trust.count("late-liar", "votes_lost") == 0  # not yet: still running
    await settle(verifier)
    assert swarm.trust.count("late-liar", "votes_lost") == 1


async def test_no_majority_and_nobody_left_fails_with_the_answers(swarm: FakeSwarm) -> None:
    swarm.worker("a", says(1))
    swarm.worker("b", says(2))
    swarm.worker("c", says(3))
    verifier = Verifier(swarm, redundancy=3)
    outcome = await run(verifier)
    assert not outcome.ok
    assert outcome.error_code == "no_majority"
    for text in ("no majority of 3", "label 1", "label 2", "label 3", "no other usable worker"):
        assert text in outcome.error
    assert "\n" not in outcome.error
    assert swarm.trust.records == []  # without a majority nobody is scored
    assert verifier.stats.no_majority == 1


async def test_disagreement_asks_more_distinct_workers(swarm: FakeSwarm) -> None:
    swarm.worker("liar", says(1))
    swarm.worker("h1", says(7), delay=0.01)
    swarm.worker("broken", fails("internal"), delay=0.01)
    swarm.worker("h2", says(7), delay=0.03)
    swarm.worker("h3", says(7), delay=0.03)
    verifier = Verifier(swarm, redundancy=3)
    outcome = await run(verifier)
    assert outcome.ok and outcome.label == 7
    assert outcome.attempts >= 4
    assert verifier.stats.extra_attempts >= 1
    await settle(verifier)
    assert all(swarm.tasks_to(n) <= 1 for n in ("liar", "h1", "broken", "h2", "h3"))


async def test_too_few_workers_fails_at_once(swarm: FakeSwarm) -> None:
    swarm.worker("a", says(7))
    swarm.worker("b", says(7))
    verifier = Verifier(swarm, redundancy=3)
    outcome = await run(verifier)
    assert outcome.error_code == "too_few_workers"
    assert "redundancy 3 needs 3 distinct usable workers" in outcome.error
    assert swarm.sent == []


async def test_quarantined_workers_do_not_count(swarm: FakeSwarm) -> None:
    for name in ("a", "b", "c"):
        swarm.worker(name, says(7))
    swarm.scheduler.gate = lambda peer: None if peer.peer_id == "c" else 1.0
    swarm.peers.get("c").quarantine = "score 0.2: lost 4 of 4 votes"  # type: ignore[union-attr]
    verifier = Verifier(swarm, redundancy=3)
    outcome = await run(verifier)
    assert outcome.error_code == "too_few_workers"
    assert "1 quarantined" in outcome.error


async def test_workers_refusing_valid_input_do_not_make_a_verdict(swarm: FakeSwarm) -> None:
    # Issue 16: a worker's bad_input is its own failure (the requester checked the input),
    # so it no longer ends the task at once: without a majority the task fails no_majority.
    for name in ("a", "b", "c"):
        swarm.worker(name, fails("bad_input"))
    verifier = Verifier(swarm, redundancy=3)
    outcome = await run(verifier)
    assert outcome.error_code == "no_majority", outcome.error
    assert "rejected" in outcome.error


async def test_vote_by_label_tolerates_float_differences(swarm: FakeSwarm) -> None:
    swarm.worker("a", says(7, wobble=0.0))
    swarm.worker("b", says(7, wobble=0.01))
    swarm.worker("c", says(7, wobble=0.02))
    by_digest = await run(Verifier(swarm, redundancy=3, vote="digest"))
    assert by_digest.error_code == "no_majority"
    by_label = await run(Verifier(swarm, redundancy=3, vote="label"))
    assert by_label.ok and by_label.label == 7 and by_label.agreeing >= 2


async def test_corrupt_and_silent_workers_are_replaced(swarm: FakeSwarm) -> None:
    swarm.worker("corrupt", corrupt(7))
    swarm.worker("silent", silent)
    swarm.worker("h1", says(7))
    swarm.worker("h2", says(7), delay=0.05)
    swarm.worker("h3", says(7), delay=0.05)
    verifier = Verifier(swarm, redundancy=3)
    outcome = await run(verifier, timeout=0.1)
    assert outcome.ok and outcome.label == 7
    assert "corrupt" not in outcome.voters and "silent" not in outcome.voters


async def test_cancelling_the_caller_cancels_the_attempts(swarm: FakeSwarm) -> None:
    for name in ("a", "b", "c"):
        swarm.worker(name, silent)
    verifier = Verifier(swarm, redundancy=3)
    task = asyncio.get_running_loop().create_task(verifier.submit("digits", INPUTS, timeout=5))
    while swarm.scheduler.inflight() < 3:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle(verifier)
    assert swarm.scheduler.inflight() == 0
    assert sum(1 for _, m in swarm.sent if m["t"] == "cancel") == 3


async def test_redundancy_1_passes_through(swarm: FakeSwarm) -> None:
    swarm.worker("a", says(4))
    verifier = Verifier(swarm, redundancy=1)
    outcome = await asyncio.wait_for(verifier.submit("digits", INPUTS), GUARD_S)
    assert outcome.ok and outcome.label == 4
    assert build_verifier(swarm, "digits") is swarm
    assert isinstance(build_verifier(swarm, "digits", redundancy=3), Verifier)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Verifier(object(), redundancy=0)
    with pytest.raises(ValueError):
        Verifier(object(), vote="majority")
    with pytest.raises(ValueError):
        SpotChecker("digits", np.zeros((2, 64)), np.zeros(2), rate=1.5)
    with pytest.raises(ValueError):
        SpotChecker("digits", np.zeros((2, 64)), np.zeros(3), rate=0.5)


# --- spot checks -----------------------------------------------------------------------------


def test_spot_checker_rate_and_fair_picks() -> None:
    spot = SpotChecker("digits", np.zeros((4, 64), np.float32), np.arange(4), rate=0.25, seed=3)
    due = [spot.due("digits") for _ in range(12)]
    assert sum(due) == 3 and due[3] == 1  # every fourth task
    assert spot.due("other-model") == 0
    picks = [spot.pick(["a", "b", "c"]) for _ in range(6)]
    assert sorted(p or "" for p in picks) == ["a", "a", "b", "b", "c", "c"]
    assert spot.pick([]) is None
    sample, label = spot.sample()
    assert sample.shape == (1, 64) and 0 <= label < 4


def test_spot_checker_keeps_what_the_reference_gets_right() -> None:
    class Spec:
        label_output = "label"
        inputs = (type("T", (), {"name": "input", "dtype": "float32"})(),)

    class Loaded:
        def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"label": np.array([0, 1, 9, 3], dtype=np.int64)}

    class Registry:
        def find(self, name: str) -> Spec:
            return Spec()

        def load(self, spec: Spec) -> Loaded:
            return Loaded()

    samples = np.arange(4 * 64, dtype=np.float32).reshape(4, 64)
    spot = SpotChecker.from_reference("digits", samples, np.arange(4), 0.1, registry=Registry())
    assert list(spot.labels) == [0, 1, 3]  # sample 2: the reference says 9, not 2


async def test_spot_checks_score_workers(swarm: FakeSwarm) -> None:
    swarm.worker("honest", says(5))
    swarm.worker("liar", says(6))
    samples = np.zeros((3, 64), np.float32)
    spot = SpotChecker("digits", samples, np.array([5, 5, 5]), rate=1.0, seed=1)
    verifier = Verifier(swarm, redundancy=1, spot=spot)
    for _ in range(4):
        await asyncio.wait_for(verifier.submit("digits", INPUTS), GUARD_S)
    await settle(verifier)
    assert verifier.stats.spot_checks == 4
    assert swarm.trust.count("honest", "spot_passed") == 2
    assert swarm.trust.count("liar", "spot_failed") == 2
    assert verifier.stats.spot_failed == 2
    line = verify_summary(verifier.stats.to_json(), 1, "digest")
    assert line == "spot checks: 4 sent, 2 failed"


def test_verify_summary() -> None:
    stats = {"accepted": 9, "no_majority": 1, "too_few_workers": 0, "votes_won": 20,
             "votes_lost": 7, "spot_checks": 0}  # fmt: skip
    assert verify_summary(stats, 3, "label") == (
        "verified x3 by label: 9 accepted, 1 without majority, 0 too few workers, votes lost 7/27"
    )
