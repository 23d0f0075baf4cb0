"""Verified results (netcore.tasks.verify) over a real Scheduler and fake workers: majorities,
disagreement, extra attempts, late votes, spot checks. No sockets, no sleeps but the fakes'."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from trust_fakes import INPUTS, SHA, FakeSwarm, FakeTrust, corrupt, fails, outputs_for, says, silent

from netcore.tasks.blind import CheckPolicy
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


async def test_two_voters_of_three_start_a_quorum_of_two(swarm: FakeSwarm) -> None:
    swarm.worker("a", says(7))
    swarm.worker("b", says(7))
    verifier = Verifier(swarm, redundancy=3)
    outcome = await run(verifier)
    assert outcome.ok and outcome.label == 7 and outcome.agreeing == 2 and outcome.attempts == 2


async def test_too_few_voters_wait_then_fail(swarm: FakeSwarm) -> None:
    swarm.worker("a", says(7))
    verifier = Verifier(swarm, redundancy=3, wait_s=0.2)
    seen: list[tuple[str, bool]] = []
    verifier.on_wait = lambda task_id, waiting: seen.append((task_id, waiting))
    outcome = await run(verifier, task_id="t1")
    assert outcome.error_code == "too_few_workers"
    assert "redundancy 3 needs 2 voters" in outcome.error and "after waiting 0.2s" in outcome.error
    assert seen == [("t1", True), ("t1", False)]
    assert verifier.stats.waited == 1 and verifier.stats.waiting == 0
    assert swarm.sent == []


async def test_a_task_waits_for_voters_instead_of_failing(swarm: FakeSwarm) -> None:
    swarm.worker("a", says(7))
    verifier = Verifier(swarm, redundancy=3, wait_s=GUARD_S)
    task = asyncio.get_running_loop().create_task(verifier.submit("digits", INPUTS))
    while verifier.stats.waiting == 0:
        await asyncio.sleep(0.01)
    assert not task.done()
    swarm.worker("b", says(7))
    swarm.scheduler.workers_changed()
    outcome = await asyncio.wait_for(task, GUARD_S)
    assert outcome.ok and outcome.label == 7 and verifier.stats.waited == 1


async def test_quarantined_workers_do_not_count(swarm: FakeSwarm) -> None:
    for name in ("a", "b"):
        swarm.worker(name, says(7))
    swarm.scheduler.gate = lambda peer: None if peer.peer_id == "b" else 1.0
    swarm.peers.get("b").quarantine = "score 0.2: lost 4 of 4 votes"  # type: ignore[union-attr]
    verifier = Verifier(swarm, redundancy=3, wait_s=0.1)
    outcome = await run(verifier)
    assert outcome.error_code == "too_few_workers"
    assert "1 quarantined" in outcome.error


async def test_voters_are_hosts_not_keys(swarm: FakeSwarm) -> None:
    """A Sybil farm (3 keys on one host, claiming a huge capacity, all the same wrong label)
    beside 3 honest workers on 3 hosts: one farm voter a task at most, so it never wins."""
    hosts = {"s1": "10.0.0.9", "s2": "10.0.0.9", "s3": "10.0.0.9"}
    for name in ("s1", "s2", "s3"):
        swarm.worker(name, says(3), capacity=1000)
    for i, name in enumerate(("h1", "h2", "h3")):
        swarm.worker(name, says(7), delay=0.01, capacity=1)
        hosts[name] = f"10.0.0.{i + 1}"
    swarm.scheduler.host_of = hosts.__getitem__
    verifier = Verifier(swarm, redundancy=3, vote="label")
    for _ in range(10):
        outcome = await run(verifier)
        assert outcome.ok and outcome.label == 7, outcome
        assert len({hosts[v] for v in outcome.voters}) == len(outcome.voters) == outcome.hosts
        await settle(verifier)
    assert verifier.stats.hosts_voted == 4
    farm_tasks = sum(swarm.tasks_to(n) for n in ("s1", "s2", "s3"))
    assert farm_tasks <= 10  # at most one replica a task


class ProbationTrust(FakeTrust):
    """Records, and holds the workers named in ``new`` on probation."""

    def __init__(self, new: set[str]) -> None:
        super().__init__()
        self.new = new

    def on_probation(self, peer_id: str) -> bool:
        return peer_id in self.new and self.count(peer_id, "spot_passed") < 3


class Reference:
    """A registry whose own copy of the model always says ``label``."""

    def __init__(self, label: int) -> None:
        self.label = label
        self.runs = 0

    def find(self, name: str, sha256: str | None = None) -> Any:
        return type("Spec", (), {"inputs": [type("T", (), {"name": "input"})()],
                                 "label_output": "label", "sha256": SHA})()  # fmt: skip

    def sha_of(self, name: str, sha256: str | None = None) -> str:
        return SHA

    def load(self, spec: Any) -> Any:
        outer = self

        class Loaded:
            def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                outer.runs += 1
                return outputs_for(outer.label)

        return Loaded()


async def test_probation_results_are_checked_blindly_and_a_liar_is_reissued(
    swarm: FakeSwarm,
) -> None:
    swarm.trust = ProbationTrust({"liar", "honest"})
    swarm.registry = Reference(5)  # type: ignore[assignment]
    swarm.worker("liar", says(6), capacity=1000)  # preferred by the scheduler
    swarm.worker("honest", says(5), delay=0.01)
    verifier = Verifier(swarm, redundancy=1, vote="label", check_rate=0.0)
    outcomes = [
        await asyncio.wait_for(verifier.submit("digits", INPUTS), GUARD_S) for _ in range(6)
    ]
    assert all(o.ok and o.label == 5 for o in outcomes), [o.label for o in outcomes]
    assert all(o.worker == "honest" for o in outcomes)
    assert swarm.trust.count("liar", "spot_failed") >= 1
    assert swarm.trust.count("honest", "spot_passed") == 3  # then out of probation
    assert verifier.stats.mismatches == 1 and verifier.stats.quarantined == 1
    assert verifier.stats.reissued == 1
    assert verifier.stats.checked == 4  # 1 mismatch, 3 passes; then rate 0: no more checks


async def test_probation_workers_never_vote_and_get_trials(swarm: FakeSwarm) -> None:
    swarm.trust = ProbationTrust({"new-liar"})
    swarm.worker("new-liar", says(3), capacity=1000)
    for name in ("a", "b", "c"):
        swarm.worker(name, says(7), delay=0.01)
    verifier = Verifier(swarm, redundancy=3, vote="label")
    for _ in range(3):
        outcome = await run(verifier)
        assert outcome.ok and outcome.label == 7 and "new-liar" not in outcome.voters
        await settle(verifier)
    # Without our own copy, its trial was checked on an established worker of another host.
    assert swarm.trust.count("new-liar", "spot_failed") >= 1
    assert verifier.stats.trials >= 1 and verifier.stats.mismatches == 1


async def test_a_majority_shown_wrong_gives_the_dissenter_its_vote_back(
    swarm: FakeSwarm,
) -> None:
    """Two colluders outvote one honest worker; the blind check of the accepted answer (our own
    copy says 7) convicts them, and the honest worker's lost vote is restored."""
    swarm.registry = Reference(7)  # type: ignore[assignment]
    swarm.worker("honest", says(7))
    swarm.worker("c1", says(3), delay=0.01)
    swarm.worker("c2", says(3), delay=0.02)
    verifier = Verifier(swarm, redundancy=3, vote="label", check_rate=1.0, wait_s=0.2)
    outcome = await run(verifier)
    await settle(verifier)
    assert swarm.trust.count("honest", "votes_lost") == 1
    assert swarm.trust.count("honest", "votes_restored") == 1
    assert swarm.trust.count("c1", "votes_restored") == 0
    assert verifier.stats.votes_restored == 1 and verifier.stats.quarantined == 2
    # The colluders are out; one voter is left: the re-issued vote cannot be decided.
    assert not outcome.ok and outcome.error_code == "too_few_workers"


def test_check_rate_rises_with_the_share_of_work() -> None:
    policy = CheckPolicy(0.1, seed=1)
    for i in range(100):
        policy.served_by("big" if i % 4 else "small")  # 75% / 25% of the work
    assert policy.rate_for("small") == pytest.approx(0.1)
    assert policy.rate_for("big") == pytest.approx(0.15)
    assert all(policy.due("x", probation=True) for _ in range(5))


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
    # A known answer can be recognised: passing one ends no probation (no spot_passed).
    assert swarm.trust.count("honest", "spot_passed") == 0
    assert swarm.trust.count("liar", "spot_failed") == 2
    assert verifier.stats.spot_failed == 2 and verifier.stats.spot_passed == 2
    line = verify_summary(verifier.stats.to_json(), 1, "digest")
    assert line == "known-answer checks: 4 sent, 2 failed"


def test_verify_summary() -> None:
    stats = {"accepted": 9, "no_majority": 1, "too_few_workers": 0, "votes_won": 20,
             "votes_lost": 7, "spot_checks": 0}  # fmt: skip
    assert verify_summary(stats, 3, "label") == (
        "verified x3 by label (quorum 2): 9 accepted, 1 without majority, 0 too few voters, "
        "votes lost 7/27, hosts voted 0"
    )
    stats.update(checked=40, mismatches=2, quarantined=1, reissued=5, waited=3, waiting=1,
                 hosts_voted=3)  # fmt: skip
    assert verify_summary(stats, 3, "label").endswith(
        "hosts voted 3; blind checks: 40 checked, 2 mismatches, 1 workers quarantined, "
        "5 re-issued; waited for voters: 3 tasks (1 waiting)"
    )
