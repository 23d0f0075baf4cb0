"""An in-memory swarm for the scheduler and verifier tests: a real :class:`Scheduler` over
fake workers that answer (or lie, or stay silent) on a later turn of the loop. No sockets.

(A module with a unique name rather than a conftest, so tests can import it.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from netcore.net.peers import Peer, PeerTable
from netcore.observe.events import Event
from netcore.tasks.scheduler import Scheduler, TaskOutcome
from netcore.wire import protocol

SHA = "ab" * 32
MODEL_ENTRY: dict[str, Any] = {
    "name": "digits",
    "sha256": SHA,
    "size": 1,
    "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 64]}],
    "outputs": [{"name": "label", "dtype": "int64"}, {"name": "probabilities", "dtype": "float32"}],
    "label_output": "label",
}
INPUTS = {"input": np.arange(64, dtype=np.float32).reshape(1, 64)}

Answer = Callable[[str, dict[str, Any]], "dict[str, Any] | None"]
"""(peer_id, task) -> the reply, or None to stay silent."""


def outputs_for(label: int, wobble: float = 0.0) -> dict[str, np.ndarray]:
    probs = np.full((1, 10), 0.05, dtype=np.float32)
    probs[0, label] = 0.55 + wobble
    return {"label": np.array([label], dtype=np.int64), "probabilities": probs}


def result(task: Mapping[str, Any], label: int, wobble: float = 0.0) -> dict[str, Any]:
    wire = protocol.tensor_map(outputs_for(label, wobble))
    return {"t": "result", "id": task["id"], "outputs": wire,
            "digest": protocol.digest_tensors(wire), "took_us": 5}  # fmt: skip


class FakeTrust:
    """Records what the verifier reports."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def record(self, peer_id: str, counter: str) -> None:
        self.records.append((peer_id, counter))

    def count(self, peer_id: str, counter: str) -> int:
        return self.records.count((peer_id, counter))

    def restore_votes(self, peer_ids: list[str], count: int = 1) -> None:
        for peer_id in peer_ids:
            self.records.append((peer_id, "votes_restored"))


class FakeSwarm:
    """A node-like object (``submit``, ``scheduler``, ``peers``, ``trust``, ``registry``)."""

    def __init__(self, **scheduler_options: Any) -> None:
        self.peers = PeerTable()
        self.events: list[Event] = []
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, Answer] = {}
        self.delays: dict[str, float] = {}
        self.scheduler = Scheduler(self.peers, self.send, self.events.append, **scheduler_options)
        self.trust = FakeTrust()
        self.registry = None
        self._timers: set[asyncio.TimerHandle] = set()

    def worker(self, peer_id: str, answer: Answer, delay: float = 0.0, **fields: Any) -> Peer:
        peer, _ = self.peers.upsert(
            peer_id, "K" * 40, "mdns", caps=["infer"], models=[dict(MODEL_ENTRY)], **fields
        )
        peer.greeted = True
        peer.rtt = 0.001
        self.answers[peer_id] = answer
        self.delays[peer_id] = delay
        return peer

    def send(self, peer_id: str, msg: Mapping[str, Any]) -> bool:
        decoded = protocol.decode(protocol.encode(msg))
        self.sent.append((peer_id, decoded))
        if decoded["t"] == "task":
            reply = self.answers[peer_id](peer_id, decoded)
            if reply is not None:
                loop = asyncio.get_running_loop()
                msg_back = protocol.decode(protocol.encode(reply))
                delay = self.delays.get(peer_id, 0.0)
                if delay:
                    handle = loop.call_later(delay, self.scheduler.on_reply, peer_id, msg_back)
                    self._timers.add(handle)
                else:
                    loop.call_soon(self.scheduler.on_reply, peer_id, msg_back)
        return True

    def tasks_to(self, peer_id: str) -> int:
        return sum(1 for p, m in self.sent if p == peer_id and m["t"] == "task")

    async def submit(self, model: str, inputs: Any, **options: Any) -> TaskOutcome:
        if isinstance(inputs, np.ndarray):
            inputs = {"input": inputs}
        return await self.scheduler.submit(model, inputs, **options)

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()


def says(label: int, wobble: float = 0.0) -> Answer:
    def answer(peer_id: str, task: dict[str, Any]) -> dict[str, Any]:
        return result(task, label, wobble)

    return answer


def fails(code: str) -> Answer:
    def answer(peer_id: str, task: dict[str, Any]) -> dict[str, Any]:
        return protocol.error(code, f"worker says {code}", task["id"])

    return answer


def silent(peer_id: str, task: dict[str, Any]) -> None:
    return None


def corrupt(label: int) -> Answer:
    def answer(peer_id: str, task: dict[str, Any]) -> dict[str, Any]:
        return {**result(task, label), "digest": b"\x00" * 32}

    return answer
