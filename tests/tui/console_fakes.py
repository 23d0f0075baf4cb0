"""Helpers for the console tests: an in-memory FakeNode, a frozen clock, a polling helper.

Rules: every real node binds 127.0.0.1 only, on a network name unique to its test; every
process a test starts is stopped by PID. Tests wait on conditions, never on fixed sleeps.
(A module with a unique name rather than conftest.py, so tests can import it.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from model_helpers import LOOPBACK

from netcore.config.settings import Config
from netcore.net.peers import Peer, PeerState, PeerTable
from netcore.node import NodeStartError
from netcore.observe.events import (
    Event,
    NodeReady,
    PeerAlive,
    PeerDown,
    PeerEvasive,
    PeerUp,
    TaskRetry,
)
from netcore.tasks.scheduler import TaskOutcome

SIGNATURES: dict[str, list[dict[str, Any]]] = {
    "digits": [{"name": "input", "dtype": "float32", "shape": [-1, 64]}],
    "iris": [{"name": "float_input", "dtype": "float32", "shape": [-1, 4]}],
}
"""The inputs a fake peer advertises for a model (as a real hello does)."""


class FrozenClock:
    """A monotonic clock that only moves when a test moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSubscription:
    def __init__(self, node: FakeNode) -> None:
        self.node = node
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item


class FakeRegistry:
    def __init__(self, names: list[str]) -> None:
        self._names = names

    def names(self) -> list[str]:
        return list(self._names)


class FakeNode:
    """The Node interface the console uses, in memory; tests push events with its helpers.

    ``submit`` answers at once with a deterministic outcome: the label is the index of the
    largest of the sample's first ten values, the latency grows with the label. Set
    ``hold`` to an ``asyncio.Event`` to make ``submit`` wait for it.
    """

    def __init__(
        self,
        *,
        name: str = "studio",
        network: str = "lab",
        peer_id: str = "5eed5eed5eed5eed5eed",
        endpoint: str = "tcp://127.0.0.1:47001",
        fail: str | None = None,
        clock: FrozenClock | None = None,
        models: list[str] | None = None,
    ) -> None:
        self.clock = clock or FrozenClock()
        self.config = Config(
            interfaces=(LOOPBACK,), network=network, name=name, data_dir=Path("/nonexistent/fake")
        )
        self.peers = PeerTable(clock=self.clock)
        self.registry = FakeRegistry(models if models is not None else ["digits"])
        self._peer_id = peer_id
        self._endpoint = endpoint
        self.fail = fail
        self.started = False
        self.stopped = False
        self.subscriptions: list[FakeSubscription] = []
        self.submitted: list[dict[str, Any]] = []
        self.hold: asyncio.Event | None = None

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def endpoint(self) -> str:
        return self._endpoint if self.started else ""

    def events(self) -> FakeSubscription:
        sub = FakeSubscription(self)
        self.subscriptions.append(sub)
        return sub

    def publish(self, event: Event) -> None:
        for sub in self.subscriptions:
            sub.queue.put_nowait(event)

    async def start(self) -> None:
        if self.fail is not None:
            raise NodeStartError(self.fail)
        self.started = True
        self.publish(NodeReady(peer_id=self._peer_id, endpoint=self._endpoint, key="k" * 40))

    async def stop(self) -> None:
        self.stopped = True
        for sub in self.subscriptions:
            sub.queue.put_nowait(None)

    def usable_peers(self, kind: str | None = "infer", model: str | None = None) -> list[Peer]:
        found = [p for p in self.peers if p.greeted and p.state is PeerState.ALIVE]
        if model is not None:
            found = [p for p in found if p.has_model(model)]
        return found

    async def submit(self, model: str, inputs: np.ndarray, **options: Any) -> TaskOutcome:
        self.submitted.append({"model": model, **options})
        if self.hold is not None:
            await self.hold.wait()
        label = int(np.argmax(np.asarray(inputs).reshape(-1)[:10]))
        probabilities = np.full((1, 10), 0.01, dtype=np.float32)
        probabilities[0, label] = 0.91
        workers = self.usable_peers(model=model)
        worker = options.get("pin") or (workers[label % len(workers)].peer_id if workers else None)
        return TaskOutcome(
            task_id=options.get("task_id", "t"),
            ok=True,
            model=model,
            worker=worker,
            latency_s=(1.0 + 0.4 * label) / 1000,
            attempts=1,
            outputs={"label": np.array([label], dtype=np.int64), "probabilities": probabilities},
            label_output="label",
        )

    # --- helpers for tests --------------------------------------------------------------

    def add_peer(
        self,
        peer_id: str,
        name: str,
        endpoint: str,
        *,
        rtt_ms: float | None = None,
        capacity: int = 4,
        inflight: int = 0,
        tasks_ok: int = 0,
        tasks_failed: int = 0,
        age: float = 0.0,
        models: tuple[str, ...] = ("digits",),
    ) -> Peer:
        peer, _ = self.peers.upsert(
            peer_id,
            "k" * 40,
            "mdns",
            name=name,
            caps=["infer"],
            models=[{"name": m, "inputs": SIGNATURES.get(m, [])} for m in models],
            capacity=capacity,
        )
        peer.endpoints = [endpoint]
        peer.greeted = True
        peer.announced = True
        peer.first_seen = self.clock() - age
        peer.rtt = rtt_ms / 1000 if rtt_ms is not None else None
        peer.inflight = inflight
        peer.tasks_ok = tasks_ok
        peer.tasks_failed = tasks_failed
        self.publish(PeerUp(peer_id=peer_id, name=name, endpoint=endpoint))
        return peer

    def evade(self, peer_id: str) -> None:
        peer = self.peers.get(peer_id)
        assert peer is not None
        peer.state = PeerState.EVASIVE
        self.publish(PeerEvasive(peer_id=peer_id))

    def revive(self, peer_id: str) -> None:
        peer = self.peers.get(peer_id)
        assert peer is not None
        peer.state = PeerState.ALIVE
        self.publish(PeerAlive(peer_id=peer_id))

    def drop(self, peer_id: str, reason: str = "bye") -> None:
        self.peers.remove(peer_id)
        self.publish(PeerDown(peer_id=peer_id, reason=reason))

    def retry(self, task_id: str, worker: str) -> None:
        self.publish(TaskRetry(task_id=task_id, worker=worker, reason="timeout"))


def digit_samples() -> tuple[np.ndarray, np.ndarray]:
    """Ten synthetic samples: sample k has its largest value at position k, label k."""
    x = np.zeros((10, 64), dtype=np.float32)
    for k in range(10):
        x[k, k] = 16.0
    return x, np.arange(10, dtype=np.int64)
