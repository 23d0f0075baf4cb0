"""Unit tests for the Scheduler against an in-memory network (no sockets, no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from netcore.net.peers import Peer, PeerTable
from netcore.observe.events import Event, TaskDone, TaskRetry
from netcore.tasks import share as share_module
from netcore.tasks.scheduler import Scheduler, TaskOutcome
from netcore.wire import protocol
from netcore.wire.protocol import TaskError

SHA = "ab" * 32
MODEL_ENTRY: dict[str, Any] = {
    "name": "digits",
    "sha256": SHA,
    "size": 21171,
    "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 64]}],
    "outputs": [{"name": "label", "dtype": "int64"}, {"name": "probabilities", "dtype": "float32"}],
    "label_output": "label",
}
INPUTS = {"input": np.arange(64, dtype=np.float32).reshape(1, 64)}
GUARD_S = 10.0  # a hang guard only; every test finishes in milliseconds

Behavior = Callable[[str, dict[str, Any]], None]


class FixedRandom:
    """Takes the jitter out of Scheduler.choose so that tests are deterministic."""

    @staticmethod
    def random() -> float:
        return 0.5


@pytest.fixture(autouse=True)
def _no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(share_module, "random", FixedRandom())


def outputs_for(label: int) -> dict[str, np.ndarray]:
    probs = np.full((1, 10), 0.05, dtype=np.float32)
    probs[0, label] = 0.55
    return {"label": np.array([label], dtype=np.int64), "probabilities": probs}


def result_reply(task: Mapping[str, Any], label: int = 7) -> dict[str, Any]:
    wire = protocol.tensor_map(outputs_for(label))
    return {
        "t": "result",
        "id": task["id"],
        "outputs": wire,
        "digest": protocol.digest_tensors(wire),
        "took_us": 9,
    }


def error_reply(task: Mapping[str, Any], code: str) -> dict[str, Any]:
    return protocol.error(code, f"worker says {code}", task["id"])


class FakeNet:
    """Stands in for the transport: records what the scheduler sends and lets each fake peer
    answer through ``scheduler.on_reply`` on a later turn of the loop, as the node would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.behaviors: dict[str, Behavior] = {}
        self.unreachable: set[str] = set()
        self.scheduler: Scheduler | None = None

    def send(self, peer_id: str, msg: Mapping[str, Any]) -> bool:
        # Everything the scheduler sends must be a valid protocol message.
        decoded = protocol.decode(protocol.encode(msg))
        self.sent.append((peer_id, decoded))
        if peer_id in self.unreachable:
            return False
        if decoded["t"] == "task":
            self.behaviors.get(peer_id, silent)(peer_id, decoded)
        return True

    def deliver(self, peer_id: str, reply: dict[str, Any]) -> None:
        """Hand a reply to the scheduler on the next turn of the loop, through the codec."""
        assert self.scheduler is not None
        msg = protocol.decode(protocol.encode(reply))
        asyncio.get_running_loop().call_soon(self.scheduler.on_reply, peer_id, msg)

    def tasks(self, peer_id: str | None = None) -> list[dict[str, Any]]:
        return [m for p, m in self.sent if m["t"] == "task" and (peer_id is None or p == peer_id)]

    def cancels(self, peer_id: str | None = None) -> list[dict[str, Any]]:
        return [m for p, m in self.sent if m["t"] == "cancel" and (peer_id is None or p == peer_id)]


# Behaviors: how a fake peer answers a task.


def silent(peer_id: str, task: dict[str, Any]) -> None:
    """Never answers."""


class Env:
    def __init__(self, **kwargs: Any) -> None:
        self.peers = PeerTable()
        self.net = FakeNet()
        self.events: list[Event] = []
        self.scheduler = Scheduler(self.peers, self.net.send, self.events.append, **kwargs)
        self.net.scheduler = self.scheduler

    def worker(
        self,
        peer_id: str,
        behavior: Behavior | None = None,
        *,
        rtt: float | None = 0.001,
        models: list[dict[str, Any]] | None = None,
        **fields: Any,
    ) -> Peer:
        peer, created = self.peers.upsert(
            peer_id,
            "K" * 40,
            "mdns",
            caps=["infer"],
            models=[dict(MODEL_ENTRY)] if models is None else models,
            **fields,
        )
        assert created
        peer.greeted = True
        peer.rtt = rtt
        if behavior is not None:
            self.net.behaviors[peer_id] = behavior
        return peer

    def ok(self, label: int = 7) -> Behavior:
        def answer(peer_id: str, task: dict[str, Any]) -> None:
            self.net.deliver(peer_id, result_reply(task, label))

        return answer

    def fails(self, code: str) -> Behavior:
        def answer(peer_id: str, task: dict[str, Any]) -> None:
            self.net.deliver(peer_id, error_reply(task, code))

        return answer

    def done_events(self, task_id: str | None = None) -> list[TaskDone]:
        return [
            e
            for e in self.events
            if isinstance(e, TaskDone) and (task_id is None or e.task_id == task_id)
        ]

    def retry_events(self) -> list[TaskRetry]:
        return [e for e in self.events if isinstance(e, TaskRetry)]

    async def submit(self, **kwargs: Any) -> TaskOutcome:
        outcome = await asyncio.wait_for(self.scheduler.submit("digits", INPUTS, **kwargs), GUARD_S)
        assert len(self.done_events(outcome.task_id)) == 1, "exactly one outcome per task"
        return outcome


def assert_settled(env: Env) -> None:
    """Nothing left in flight after the outcomes are in."""
    assert env.scheduler.inflight() == 0
    assert all(p.inflight == 0 for p in env.peers)


# --- choosing ----------------------------------------------------------------------------------


async def test_picks_the_lowest_rtt_worker() -> None:
    env = Env()
    env.worker("slow", env.ok(), rtt=0.010)
    env.worker("fast", env.ok(), rtt=0.001)
    env.worker("unknown", env.ok(), rtt=None)  # counted as 1 ms, same as fast
    env.peers.get("unknown").inflight = 1  # type: ignore[union-attr]
    assert env.scheduler.choose("digits", None, set()).peer_id == "fast"  # type: ignore[union-attr]
    outcome = await env.submit()
    assert outcome.ok
    assert outcome.worker == "fast"
    assert [p for p, m in env.net.sent] == ["fast"]


async def test_picks_the_least_loaded_worker() -> None:
    env = Env()
    busy = env.worker("busy", env.ok())
    env.worker("idle", env.ok())
    busy.inflight = 3
    assert env.scheduler.choose("digits", None, set()).peer_id == "idle"  # type: ignore[union-attr]
    busy.inflight = 0
    busy.remote_queued = 5  # what its last pong said
    assert env.scheduler.choose("digits", None, set()).peer_id == "idle"  # type: ignore[union-attr]
    outcome = await env.submit()
    assert outcome.worker == "idle"


def test_claimed_capacity_is_no_weight() -> None:
    # Before issue 16 the load was divided by the claimed capacity: a worker claiming 10^6
    # slots looked idle with 1000 tasks in flight and got every task.
    env = Env()
    big = env.worker("big", capacity=10**6)
    small = env.worker("small", capacity=1)
    big.inflight = 2
    small.inflight = 0
    assert env.scheduler.choose("digits", None, set()) is small


def test_prefers_untried_workers_and_falls_back_to_tried_ones() -> None:
    env = Env()
    env.worker("best", rtt=0.001)
    env.worker("worse", rtt=0.050)
    assert env.scheduler.choose("digits", None, set()).peer_id == "best"  # type: ignore[union-attr]
    assert env.scheduler.choose("digits", None, {"best"}).peer_id == "worse"  # type: ignore[union-attr]
    # Every one tried: the best of them rather than none.
    assert env.scheduler.choose("digits", None, {"best", "worse"}).peer_id == "best"  # type: ignore[union-attr]


def test_candidates_must_hold_the_model_and_be_usable() -> None:
    env = Env()
    env.worker("has-it")
    env.worker("other-model", models=[{**MODEL_ENTRY, "name": "mnist"}])
    env.worker("other-version", models=[{**MODEL_ENTRY, "sha256": "cd" * 32}])
    ungreeted = env.worker("ungreeted")
    ungreeted.greeted = False
    no_caps = env.worker("client-only")
    no_caps.caps = []

    assert {p.peer_id for p in env.scheduler.candidates("digits", None)} == {
        "has-it",
        "other-version",
    }
    assert [p.peer_id for p in env.scheduler.candidates("digits", SHA)] == ["has-it"]
    assert [p.peer_id for p in env.scheduler.candidates("digits", "cd" * 32)] == ["other-version"]
    assert [p.peer_id for p in env.scheduler.candidates("mnist", None)] == ["other-model"]
    assert env.scheduler.candidates("nothing", None) == []
    assert [p.peer_id for p in env.scheduler.candidates("digits", None, pin="other-version")] == [
        "other-version"
    ]
    assert env.scheduler.choose("digits", None, set(), pin="ungreeted") is None


# --- the task message --------------------------------------------------------------------------


async def test_task_message_fields() -> None:
    env = Env()
    env.worker("w", env.ok())
    outcome = await env.submit(sha256=SHA, timeout=0.25)
    assert outcome.ok
    (task,) = env.net.tasks("w")
    assert task["kind"] == "infer"
    assert task["model"] == "digits"
    assert task["sha256"] == SHA
    assert task["timeout_ms"] == 250
    assert isinstance(task["id"], bytes) and len(task["id"]) == 16
    got = protocol.decode_tensor_map(task["inputs"])
    assert got["input"].tobytes() == INPUTS["input"].tobytes()
    assert got["input"].shape == (1, 64)


async def test_outcome_carries_outputs_label_and_confidence() -> None:
    env = Env()
    peer = env.worker("w", env.ok(label=4))
    outcome = await env.submit()
    assert outcome.ok
    assert outcome.error_code == ""
    assert outcome.attempts == 1
    assert outcome.took_us == 9
    assert outcome.label == 4
    assert outcome.label_output == "label"
    assert outcome.confidence == pytest.approx(0.55)
    assert outcome.outputs["label"].tolist() == [4]
    assert outcome.digest == protocol.digest_tensors(protocol.tensor_map(outputs_for(4)))
    assert peer.tasks_ok == 1
    assert peer.rtt is not None
    assert (env.scheduler.submitted, env.scheduler.succeeded, env.scheduler.failed) == (1, 1, 0)
    (done,) = env.done_events()
    assert done.ok and done.worker == "w" and done.label == 4 and done.attempts == 1
    assert_settled(env)


async def test_unsendable_inputs_fail_as_bad_input_without_sending() -> None:
    env = Env()
    env.worker("w", env.ok())
    outcome = await asyncio.wait_for(
        env.scheduler.submit("digits", {"input": np.array([1 + 2j])}), GUARD_S
    )
    assert not outcome.ok
    assert outcome.error_code == "bad_input"
    assert env.net.sent == []
    assert len(env.done_events()) == 1


# --- timeouts, cancel and late replies ---------------------------------------------------------


async def test_timeout_retries_elsewhere_and_cancels_the_abandoned_attempt() -> None:
    env = Env()
    mute = env.worker("mute", silent, rtt=0.001)
    env.worker("good", env.ok(), rtt=0.005)
    outcome = await env.submit(timeout=0.05)
    assert outcome.ok
    assert outcome.worker == "good"
    assert outcome.attempts == 2
    (abandoned,) = env.net.tasks("mute")
    assert [c["id"] for c in env.net.cancels("mute")] == [abandoned["id"]]
    assert env.net.cancels("good") == []
    # The cancel follows the abandoned task.
    order = [(p, m["t"]) for p, m in env.net.sent]
    assert order.index(("mute", "cancel")) > order.index(("mute", "task"))
    assert mute.tasks_failed == 1
    (retry,) = env.retry_events()
    assert retry.worker == "mute" and retry.task_id == outcome.task_id
    assert env.scheduler.retries == 1
    assert_settled(env)


async def test_late_reply_to_an_abandoned_attempt_is_a_duplicate() -> None:
    env = Env()
    env.worker("mute", silent, rtt=0.001)
    env.worker("good", env.ok(label=2), rtt=0.005)
    outcome = await env.submit(timeout=0.05)
    assert outcome.worker == "good"
    (abandoned,) = env.net.tasks("mute")

    env.net.deliver("mute", result_reply(abandoned, label=9))
    await asyncio.sleep(0)  # one turn of the loop: the reply is handled
    assert env.scheduler.duplicates == 1
    assert len(env.done_events()) == 1
    assert outcome.label == 2
    assert env.scheduler.succeeded == 1


async def test_late_reply_while_the_retry_runs_does_not_win() -> None:
    env = Env()
    env.worker("mute", silent, rtt=0.001)

    def answer_after_the_late_one(peer_id: str, task: dict[str, Any]) -> None:
        (abandoned,) = env.net.tasks("mute")
        env.net.deliver("mute", result_reply(abandoned, label=9))  # arrives first
        env.net.deliver(peer_id, result_reply(task, label=2))

    env.worker("good", answer_after_the_late_one, rtt=0.005)
    outcome = await env.submit(timeout=0.05)
    assert outcome.ok and outcome.worker == "good" and outcome.label == 2
    assert env.scheduler.duplicates == 1
    assert len(env.done_events()) == 1


async def test_reply_from_another_peer_is_ignored() -> None:
    env = Env()

    def spoofed_then_real(peer_id: str, task: dict[str, Any]) -> None:
        env.net.deliver("intruder", result_reply(task, label=1))
        env.net.deliver(peer_id, result_reply(task, label=7))

    env.worker("w", spoofed_then_real)
    outcome = await env.submit()
    assert outcome.ok and outcome.label == 7
    assert env.scheduler.duplicates == 1


async def test_reply_delivered_twice_counts_one_duplicate() -> None:
    env = Env()

    def twice(peer_id: str, task: dict[str, Any]) -> None:
        env.net.deliver(peer_id, result_reply(task))
        env.net.deliver(peer_id, result_reply(task))

    env.worker("w", twice)
    outcome = await env.submit()
    await asyncio.sleep(0)
    assert outcome.ok
    assert env.scheduler.duplicates == 1
    assert len(env.done_events()) == 1


def test_unmatched_replies_return_false() -> None:
    env = Env()
    assert env.scheduler.on_reply("w", {"t": "result", "id": b"\x00" * 16}) is False
    assert env.scheduler.on_reply("w", {"t": "error", "code": "internal", "message": ""}) is False
    assert env.scheduler.on_reply("w", {"t": "error", "id": ["not", "bytes"]}) is False
    assert env.scheduler.duplicates == 3


async def test_every_attempt_times_out() -> None:
    env = Env(max_attempts=3)
    env.worker("a", silent, rtt=0.001)
    env.worker("b", silent, rtt=0.002)
    outcome = await env.submit(timeout=0.02)
    assert not outcome.ok
    assert outcome.error_code == "timeout"
    assert outcome.attempts == 3
    assert outcome.worker is None
    tasks = env.net.tasks()
    assert len(tasks) == 3
    assert len({t["id"] for t in tasks}) == 3, "each attempt has its own id"
    assert sorted(c["id"] for c in env.net.cancels()) == sorted(t["id"] for t in tasks)
    assert env.scheduler.failed == 1
    assert_settled(env)


# --- error replies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["bad_input", "bad_output", "bad_request", "too_large", "unsupported"]
)
async def test_a_workers_refusal_is_its_failure_and_the_task_runs_elsewhere(code: str) -> None:
    # Before issue 16 these codes ended the task at once: one worker answering bad_input to
    # valid input failed every task it was given.
    env = Env()
    picky = env.worker("picky", env.fails(code), rtt=0.001)
    env.worker("other", env.ok(), rtt=0.005)
    outcome = await env.submit()
    assert outcome.ok and outcome.worker == "other"
    assert outcome.attempts == 2
    assert picky.tasks_failed == 1, "counted against the worker that refused"
    (retry,) = env.retry_events()
    assert retry.worker == "picky" and code in retry.reason
    assert_settled(env)


async def test_refused_everywhere_fails_rejected_naming_what_they_said() -> None:
    env = Env()
    for name in ("a", "b", "c"):
        env.worker(name, env.fails("bad_input"))
    outcome = await env.submit()
    assert not outcome.ok and outcome.error_code == "rejected"
    assert outcome.attempts == 3
    assert outcome.error.count("said bad_input") == 3
    assert {t["id"] for t in env.net.tasks()} and len(env.net.tasks()) == 3
    assert_settled(env)


async def test_inputs_that_do_not_fit_our_copy_of_the_model_fail_before_sending() -> None:
    from netcore.models.registry import ModelRegistry, assets_dir

    env = Env()
    env.worker("w", env.ok())
    registry = ModelRegistry([assets_dir() / "models"])
    env.scheduler.local_spec = registry.find
    wrong = {"input": np.zeros((1, 3), dtype=np.float32)}
    outcome = await asyncio.wait_for(env.scheduler.submit("digits", wrong), GUARD_S)
    assert not outcome.ok and outcome.error_code == "bad_input" and outcome.attempts == 0
    assert env.net.tasks() == [], "the requester judged the input itself"


@pytest.mark.parametrize(
    "outputs",
    [
        {"label": np.array([1, 2], dtype=np.int64)},  # two rows for one sample
        {"label": np.array([1.0], dtype=np.float32)},  # the class output's dtype
        {"probabilities": np.zeros((1, 10), dtype=np.float32)},  # no class output
        {"label": np.array([1], dtype=np.int64), "extra": np.zeros(1, dtype=np.float32)},
    ],
)
async def test_an_answer_that_does_not_fit_the_model_is_retried(
    outputs: dict[str, np.ndarray],
) -> None:
    from netcore.models.registry import ModelRegistry, assets_dir

    registry = ModelRegistry([assets_dir() / "models"])
    spec = registry.find("digits")
    assert spec is not None
    env = Env()
    entry = {**MODEL_ENTRY, "sha256": spec.sha256}
    wire = protocol.tensor_map(outputs)

    def odd(peer_id: str, task: dict[str, Any]) -> None:
        env.net.deliver(
            peer_id,
            {"t": "result", "id": task["id"], "outputs": wire,
             "digest": protocol.digest_tensors(wire), "took_us": 1},
        )  # fmt: skip

    shaped = env.worker("shaped", odd, rtt=0.001, models=[entry])
    env.worker("right", env.ok(), rtt=0.005, models=[entry])
    env.scheduler.local_spec = registry.find
    outcome = await env.submit()
    assert outcome.ok and outcome.worker == "right"
    assert shaped.tasks_failed == 1
    assert_settled(env)


@pytest.mark.parametrize("code", ["overloaded", "hello_required"])
async def test_overloaded_retries_elsewhere_without_using_an_attempt(code: str) -> None:
    env = Env()
    busy = env.worker("busy", env.fails(code), rtt=0.001)
    env.worker("free", env.ok(), rtt=0.005)
    outcome = await env.submit(max_attempts=1)
    assert outcome.ok, "the overloaded answer did not use up the only attempt"
    assert outcome.worker == "free"
    assert outcome.attempts == 1
    assert len(env.net.tasks("busy")) == 1
    assert busy.tasks_failed == 0, "overloaded says nothing about the peer's health"
    (retry,) = env.retry_events()
    assert retry.worker == "busy" and code in retry.reason
    assert_settled(env)


async def test_only_overloaded_workers_fail_at_the_deadline() -> None:
    env = Env()
    env.worker("busy", env.fails("overloaded"))
    outcome = await env.submit(timeout=0.05, deadline=0.05)
    assert not outcome.ok
    assert outcome.error_code == "overloaded"
    assert len(env.net.tasks("busy")) >= 1
    assert_settled(env)


async def test_other_errors_use_an_attempt() -> None:
    env = Env()
    env.worker("broken", env.fails("internal"), rtt=0.001)
    env.worker("fine", env.ok(), rtt=0.005)
    failed = await env.submit(max_attempts=1)
    assert not failed.ok
    assert failed.error_code == "internal"
    assert env.net.tasks("fine") == []

    succeeded = await env.submit(max_attempts=2)
    assert succeeded.ok and succeeded.worker == "fine" and succeeded.attempts == 2


async def test_unknown_model_reply_retries_elsewhere() -> None:
    env = Env()
    env.worker("stale", env.fails("unknown_model"), rtt=0.001)
    env.worker("fresh", env.ok(), rtt=0.005)
    outcome = await env.submit()
    assert outcome.ok and outcome.worker == "fresh"


# --- peers lost, unreachable, corrupt results ---------------------------------------------------


async def test_peer_lost_fails_its_attempt_at_once_and_retries_elsewhere() -> None:
    env = Env()

    def vanish(peer_id: str, task: dict[str, Any]) -> None:
        assert env.net.scheduler is not None
        asyncio.get_running_loop().call_soon(env.scheduler.on_peer_lost, peer_id, "expired")

    lost = env.worker("lost", vanish, rtt=0.001)
    env.worker("alive", env.ok(), rtt=0.005)
    # With a 60 s attempt budget, only on_peer_lost can end the first attempt in time.
    outcome = await env.submit(timeout=60.0)
    assert outcome.ok
    assert outcome.worker == "alive"
    assert outcome.attempts == 2
    assert lost.tasks_failed == 1
    (retry,) = env.retry_events()
    assert retry.worker == "lost" and "expired" in retry.reason
    assert_settled(env)


async def test_peer_lost_fails_every_attempt_on_it() -> None:
    env = Env()
    env.worker("doomed", silent, rtt=0.001)
    env.worker("alive", env.ok(), rtt=0.5)
    runs = [asyncio.create_task(env.submit(timeout=60.0)) for _ in range(5)]
    for _ in range(100):
        if len(env.net.tasks("doomed")) == 5:
            break
        await asyncio.sleep(0)
    assert len(env.net.tasks("doomed")) == 5
    assert env.scheduler.inflight() == 5

    env.scheduler.on_peer_lost("doomed", "bye")
    outcomes = await asyncio.wait_for(asyncio.gather(*runs), GUARD_S)
    assert all(o.ok and o.worker == "alive" for o in outcomes)
    assert len(env.net.tasks("alive")) == 5
    assert_settled(env)


def test_peer_lost_without_attempts_is_harmless() -> None:
    env = Env()
    env.worker("w")
    env.scheduler.on_peer_lost("w", "bye")
    env.scheduler.on_peer_lost("nobody", "bye")
    assert env.scheduler.inflight() == 0


async def test_unreachable_peer_is_retried_elsewhere() -> None:
    env = Env()
    down = env.worker("down", env.ok(), rtt=0.001)
    env.net.unreachable.add("down")
    env.worker("up", env.ok(), rtt=0.005)
    outcome = await env.submit(timeout=60.0)
    assert outcome.ok and outcome.worker == "up" and outcome.attempts == 2
    assert down.tasks_failed == 1
    assert_settled(env)


async def test_result_with_a_wrong_digest_is_rejected_and_retried() -> None:
    env = Env()

    def bad_digest(peer_id: str, task: dict[str, Any]) -> None:
        reply = result_reply(task, label=3)
        reply["digest"] = bytes(32)
        env.net.deliver(peer_id, reply)

    liar = env.worker("liar", bad_digest, rtt=0.001)
    env.worker("honest", env.ok(label=5), rtt=0.005)
    outcome = await env.submit()
    assert outcome.ok
    assert outcome.worker == "honest"
    assert outcome.label == 5
    assert outcome.attempts == 2
    assert liar.tasks_failed == 1
    assert liar.tasks_ok == 0
    (retry,) = env.retry_events()
    assert retry.worker == "liar"


async def test_result_whose_outputs_changed_after_the_digest_is_rejected() -> None:
    env = Env()

    def tampered(peer_id: str, task: dict[str, Any]) -> None:
        reply = result_reply(task, label=3)
        reply["outputs"]["label"] = protocol.encode_tensor(np.array([8], dtype=np.int64))
        env.net.deliver(peer_id, reply)

    env.worker("tamper", tampered, rtt=0.001)
    outcome = await env.submit(max_attempts=1)
    assert not outcome.ok
    assert outcome.error_code == "internal"
    assert "corrupt" in outcome.error


# --- no worker -----------------------------------------------------------------------------------


async def test_no_worker_and_allow_local_uses_the_local_runner() -> None:
    calls: list[tuple[str, str | None, float]] = []

    async def local(
        model: str, sha256: str | None, inputs: Mapping[str, np.ndarray], timeout: float
    ) -> tuple[dict[str, np.ndarray], int]:
        calls.append((model, sha256, timeout))
        assert inputs["input"].shape == (1, 64)
        return outputs_for(3), 42

    env = Env(local=local, local_peer_id="me")
    outcome = await env.submit(allow_local=True, sha256=SHA, timeout=1.5)
    assert outcome.ok
    assert outcome.worker == "me"
    assert outcome.label == 3
    assert outcome.took_us == 42
    assert outcome.digest == protocol.digest_tensors(protocol.tensor_map(outputs_for(3)))
    assert calls == [("digits", SHA, 1.5)]
    assert env.net.sent == []


async def test_local_runner_error_is_the_outcome() -> None:
    async def local(
        model: str, sha256: str | None, inputs: Mapping[str, np.ndarray], timeout: float
    ) -> tuple[dict[str, np.ndarray], int]:
        raise TaskError("unknown_model", "no model 'digits' on this node")

    env = Env(local=local)
    outcome = await env.submit(allow_local=True)
    assert not outcome.ok
    assert outcome.error_code == "unknown_model"
    assert outcome.worker == "self"


async def test_allow_local_still_prefers_a_remote_worker() -> None:
    async def local(*args: Any) -> tuple[dict[str, np.ndarray], int]:
        raise AssertionError("a worker was available")

    env = Env(local=local)
    env.worker("w", env.ok())
    outcome = await env.submit(allow_local=True)
    assert outcome.ok and outcome.worker == "w"


@pytest.mark.parametrize("with_local_runner", [False, True])
async def test_no_worker_fails_after_the_deadline(with_local_runner: bool) -> None:
    async def local(*args: Any) -> tuple[dict[str, np.ndarray], int]:
        raise AssertionError("allow_local was not given")

    env = Env(local=local if with_local_runner else None)
    outcome = await env.submit(timeout=0.05, deadline=0.05)
    assert not outcome.ok
    assert outcome.error_code == "timeout"
    assert outcome.worker is None
    assert outcome.attempts == 0
    assert env.net.sent == []
    assert env.scheduler.failed == 1


async def test_allow_local_without_a_runner_fails_after_the_deadline() -> None:
    env = Env()
    outcome = await env.submit(allow_local=True, timeout=0.05, deadline=0.05)
    assert not outcome.ok and outcome.error_code == "timeout"


async def test_pin_to_a_peer_without_the_model_fails() -> None:
    env = Env()
    env.worker("has-it", env.ok())
    env.worker("lacks-it", env.ok(), models=[])
    outcome = await env.submit(pin="lacks-it", timeout=0.05, deadline=0.05)
    assert not outcome.ok
    assert env.net.sent == []


async def test_pin_chooses_that_worker() -> None:
    env = Env()
    env.worker("best", env.ok(), rtt=0.001)
    env.worker("pinned", env.ok(), rtt=0.100)
    outcome = await env.submit(pin="pinned")
    assert outcome.worker == "pinned"


async def test_a_worker_that_appears_wakes_a_waiting_task() -> None:
    env = Env()
    run = asyncio.create_task(env.submit(timeout=60.0))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not run.done()
    assert env.net.sent == []
    env.worker("late", env.ok())
    env.scheduler.workers_changed()
    outcome = await asyncio.wait_for(run, GUARD_S)
    assert outcome.ok and outcome.worker == "late"


# --- exactly once, under a mixed load ----------------------------------------------------------


async def test_each_submit_has_exactly_one_outcome_under_mixed_failures() -> None:
    env = Env(max_attempts=4)
    answered_twice: list[bytes] = []
    overload_turn = {"n": 0}

    def flaky_overload(peer_id: str, task: dict[str, Any]) -> None:
        overload_turn["n"] += 1
        if overload_turn["n"] % 2:
            env.net.deliver(peer_id, error_reply(task, "overloaded"))
        else:
            env.net.deliver(peer_id, result_reply(task))

    def echo_twice(peer_id: str, task: dict[str, Any]) -> None:
        answered_twice.append(task["id"])
        env.net.deliver(peer_id, result_reply(task))
        env.net.deliver(peer_id, result_reply(task))

    def bad_digest(peer_id: str, task: dict[str, Any]) -> None:
        reply = result_reply(task)
        reply["digest"] = bytes(32)
        env.net.deliver(peer_id, reply)

    env.worker("mute", silent, rtt=0.001)
    env.worker("flaky", flaky_overload, rtt=0.002)
    env.worker("echo", echo_twice, rtt=0.003)
    env.worker("liar", bad_digest, rtt=0.001)
    env.worker("broken", env.fails("internal"), rtt=0.001)

    n = 40
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(env.scheduler.submit("digits", INPUTS, timeout=0.05) for _ in range(n))),
        GUARD_S,
    )
    await asyncio.sleep(0)
    assert len(outcomes) == n
    task_ids = [o.task_id for o in outcomes]
    assert len(set(task_ids)) == n
    done = env.done_events()
    assert sorted(e.task_id for e in done) == sorted(task_ids), "one TaskDone per task"
    assert env.scheduler.submitted == n
    assert env.scheduler.succeeded + env.scheduler.failed == n
    assert env.scheduler.succeeded == sum(o.ok for o in outcomes)
    assert all(o.worker in ("flaky", "echo") for o in outcomes if o.ok)
    assert env.scheduler.duplicates == len(answered_twice)
    assert_settled(env)


# --- odd but well-formed outputs from a peer -------------------------------------------------


@pytest.mark.parametrize(
    "outputs",
    [
        pytest.param(
            {
                "label": np.array(3, dtype=np.int64),
                "probabilities": np.array(0.5, dtype=np.float32),
            },
            id="0-d",
        ),
        pytest.param({"label": np.array([np.nan], dtype=np.float32)}, id="nan-label"),
        pytest.param({"label": np.array([np.inf], dtype=np.float64)}, id="inf-label"),
        pytest.param(
            {
                "label": np.zeros((0,), dtype=np.int64),
                "probabilities": np.zeros((0, 10), dtype=np.float32),
            },
            id="empty",
        ),
        pytest.param({"probabilities": np.array([True, False])}, id="bool-probs"),
        pytest.param({}, id="no-outputs"),
    ],
)
async def test_odd_outputs_never_break_submit(outputs: dict[str, np.ndarray]) -> None:
    env = Env()

    def odd(peer_id: str, task: dict[str, Any]) -> None:
        wire = protocol.tensor_map(outputs)
        env.net.deliver(
            peer_id,
            {
                "t": "result",
                "id": task["id"],
                "outputs": wire,
                "digest": protocol.digest_tensors(wire),
                "took_us": 1,
            },
        )

    env.worker("odd", odd)
    outcome = await env.submit()
    assert outcome.ok
    assert outcome.label is None or isinstance(outcome.label, int)
    assert outcome.confidence is None or isinstance(outcome.confidence, float)
    assert_settled(env)


# --- the caller gives up ---------------------------------------------------------------------


async def test_cancelled_submit_forgets_the_attempt_and_tells_the_worker() -> None:
    env = Env(default_timeout=5.0)
    env.worker("w1")  # silent: the attempt stays in flight
    task = asyncio.ensure_future(env.scheduler.submit("digits", INPUTS))
    for _ in range(5):
        await asyncio.sleep(0)
    assert env.scheduler.inflight() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_settled(env)
    sent_task = env.net.tasks("w1")[0]
    assert [c["id"] for c in env.net.cancels("w1")] == [sent_task["id"]]


# --- learning from attempts (netcore.tasks.health) ---------------------------------------------------


async def test_a_worker_that_keeps_failing_rests_while_others_can_work() -> None:
    env = Env(default_timeout=5.0)
    env.worker("bad", env.fails("internal"), rtt=0.0001)  # fastest: chosen first
    env.worker("good", env.ok(), rtt=0.01)
    env.scheduler.share.alpha = 0.0  # measured shares aside: the rest alone keeps it away
    for _ in range(2):
        assert (await env.submit()).ok
    assert env.scheduler.rest.resting("bad")
    before = len(env.net.tasks("bad"))
    for _ in range(5):
        assert (await env.submit()).worker == "good"
    assert len(env.net.tasks("bad")) == before  # rested: not tried at all


async def test_attempt_timeout_follows_observed_latency() -> None:
    env = Env(default_timeout=5.0)
    env.worker("w", env.ok())
    for _ in range(10):
        await env.submit()
    budget_ms = env.net.tasks("w")[0]["timeout_ms"]
    learned_ms = env.net.tasks("w")[-1]["timeout_ms"]
    assert budget_ms == 5000
    assert learned_ms < budget_ms  # srtt is tiny here: the floor applies
    assert learned_ms == int(env.scheduler.timer.floor * 1000)


# --- shares: measured, capped by claims, bounded on probation (netcore.tasks.share) -----------


def test_measured_service_time_decides_not_the_claim() -> None:
    env = Env()
    sybil = env.worker("sybil", capacity=10**6, rtt=0.0001)
    honest = env.worker("honest", capacity=2, rtt=0.001)
    share = env.scheduler.share
    for _ in range(20):
        share.observe("sybil", "digits", 0.050)  # what its answers really took
        share.observe("honest", "digits", 0.002)
    assert env.scheduler.choose("digits", None, set()) is honest
    honest.inflight = 10  # 11 x 2 ms still beats 1 x 50 ms
    assert env.scheduler.choose("digits", None, set()) is honest
    honest.inflight = 30
    assert env.scheduler.choose("digits", None, set()) is sybil


def test_a_worker_that_keeps_failing_loses_its_share() -> None:
    env = Env()
    env.worker("flaky", rtt=0.001)
    steady = env.worker("steady", rtt=0.001)
    for _ in range(10):
        env.scheduler.share.observe("flaky", "digits", None)
        env.scheduler.share.observe("steady", "digits", 0.002)
    steady.inflight = 2  # 3 x 2 ms beats one attempt that succeeds 1 time in 10
    assert env.scheduler.choose("digits", None, set()) is steady


def test_claimed_capacity_caps_what_is_in_flight() -> None:
    env = Env()
    only = env.worker("only", capacity=1)
    only.inflight = env.scheduler.share.slots(only)
    assert env.scheduler.choose("digits", None, set()) is None


async def test_a_full_worker_makes_the_task_wait_for_a_slot_not_run_locally() -> None:
    ran_local: list[str] = []

    async def local(*_args: Any) -> tuple[dict[str, np.ndarray], int]:
        ran_local.append("x")
        return outputs_for(1), 1

    env = Env(local=local)
    peer = env.worker("w", env.ok(), capacity=1)
    full = env.scheduler.share.slots(peer)
    peer.inflight = full
    task = asyncio.ensure_future(env.submit(allow_local=True))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done() and not env.net.tasks(), "waits for a slot"
    peer.inflight = full - 1
    env.scheduler._slots.wake_one()
    outcome = await task
    assert outcome.ok and outcome.worker == "w" and ran_local == []


def test_probation_workers_get_a_bounded_share_while_settled_ones_have_room() -> None:
    env = Env()
    settled = env.worker("settled", rtt=0.010)  # slower than every newcomer
    newcomers = [env.worker(f"new{i}", rtt=0.0005, capacity=10**6) for i in range(3)]
    env.scheduler.probation = lambda p: p.peer_id.startswith("new")
    first = env.scheduler.choose("digits", None, set())
    assert first is not None and first.peer_id.startswith("new")
    first.inflight = 1  # one in flight: probation's bound (10% of in flight, at least one)
    assert env.scheduler.choose("digits", None, set()) is settled
    settled.inflight = settled.capacity * env.scheduler.share.slots_per_capacity  # full
    chosen = env.scheduler.choose("digits", None, set())
    assert chosen in newcomers, "the settled one is full: probation takes the rest, no starving"


def test_with_only_probation_workers_the_work_is_not_starved() -> None:
    env = Env()
    a = env.worker("a", rtt=0.001)
    b = env.worker("b", rtt=0.001)
    env.scheduler.probation = lambda p: True  # no check ever ran (--redundancy 1)
    a.inflight = b.inflight = 5
    assert env.scheduler.choose("digits", None, set()) in (a, b)
