"""The scheduler and workers that lack a model (``unknown_model``): the task goes to another
worker, the one that lacked it is neither rested nor reported, and a worker that keeps saying
so (honest or lying) costs a bounded number of attempts. In-memory network, as test_scheduler."""

from __future__ import annotations

import asyncio

import pytest
from test_scheduler import GUARD_S, SHA, Env, FixedRandom

from netcore.tasks import scheduler as scheduler_module
from netcore.tasks import share as share_module


@pytest.fixture(autouse=True)
def _no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(share_module, "random", FixedRandom())
    # Retries at once: what the scheduler does next never depends on how long it slept.
    monkeypatch.setattr(scheduler_module, "backoff", lambda attempt: 0.0)


def holding_env(**kwargs: object) -> tuple[Env, list[tuple[str, str]]]:
    """A requester that holds the model itself (workers without it are sent it pinned) and
    records what it tells the trust layer of each attempt."""
    env = Env(**kwargs)
    env.scheduler.local_model = lambda model, sha: SHA
    seen: list[tuple[str, str]] = []
    env.scheduler.observe = lambda peer, what: seen.append((peer.peer_id, what))
    return env, seen


async def spin(turns: int = 200) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_a_worker_that_could_not_fetch_is_neither_rested_nor_reported() -> None:
    env, seen = holding_env()
    env.worker("nofetch", env.fails("unknown_model"), rtt=0.0001, models=[])  # chosen first
    env.worker("good", env.ok(), rtt=0.01, models=[])
    for _ in range(3):
        outcome = await env.submit()
        assert outcome.ok and outcome.worker == "good"
    assert env.net.tasks("nofetch")[0]["sha256"] == SHA
    assert ("nofetch", "failed") not in seen and [w for w, _ in seen] == ["good"] * 3
    assert not env.scheduler.rest.resting("nofetch")
    assert env.scheduler.peers.get("nofetch").tasks_failed == 0  # type: ignore[union-attr]
    # Later tasks go to the worker that can run it first: one attempt spent on "nofetch".
    assert len(env.net.tasks("nofetch")) == 1


async def test_the_task_waits_for_another_worker_rather_than_asking_the_same_again() -> None:
    env, _ = holding_env()
    env.worker("nofetch", env.fails("unknown_model"), models=[])
    run = asyncio.create_task(env.submit(timeout=60.0))
    await spin()
    assert not run.done(), "the task failed on the only worker instead of waiting for another"
    assert len(env.net.tasks("nofetch")) == 1
    env.worker("late", env.ok(), models=[])
    env.scheduler.workers_changed()
    outcome = await asyncio.wait_for(run, GUARD_S)
    assert outcome.ok and outcome.worker == "late" and outcome.attempts == 2


async def test_a_worker_that_always_lacks_it_costs_bounded_attempts() -> None:
    """No other worker turns up within an attempt's budget: the same one is asked again (it
    may have been a passing failure), up to max_attempts, then the task fails in one line."""
    env, seen = holding_env(max_attempts=3)
    env.worker("liar", env.fails("unknown_model"), models=[])
    outcome = await env.submit(timeout=0.05)
    assert not outcome.ok and outcome.error_code == "unknown_model"
    assert outcome.attempts == 3 and len(env.net.tasks("liar")) == 3
    assert "liar: unknown_model: worker says unknown_model" in outcome.error
    assert seen == [] and not env.scheduler.rest.resting("liar")


async def test_a_worker_that_advertised_the_model_and_refuses_it_is_a_failure() -> None:
    env, seen = holding_env()
    env.worker("fibber", env.fails("unknown_model"), rtt=0.0001)  # advertises digits
    env.worker("good", env.ok(), rtt=0.01)
    outcome = await env.submit()
    assert outcome.ok and outcome.worker == "good"
    assert ("fibber", "failed") in seen
