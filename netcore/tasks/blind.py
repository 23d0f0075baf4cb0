"""Blind checks for verified results (:mod:`netcore.tasks.verify`).

A blind check is a real task input, picked at random **after** its result arrived, run again
by someone we trust more than the worker: the requester itself when it holds the model (in
this process, onnxruntime through the registry, in a thread off the event loop), else an
established worker on another host. The worker cannot tell a checked task from any other: it
was a real task when it was sent. The two answers are compared as the vote compares them
(:class:`netcore.tasks.votes.VoteKeys`: digest or label).

Which results are checked (:class:`CheckPolicy`): every result of a worker on probation,
and of the others a share that starts at ``--spot-check`` (the steady-state rate) and rises
with the worker's share of the recent work: a worker serving twice its fair share is
checked twice as often, so taking much of the work earns no cover.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from netcore.tasks.outcome import TaskOutcome
from netcore.wire import protocol

log = logging.getLogger("p2pai.verify")

RECENT = 200
"""Results whose workers make up "the recent work" a worker's share is measured on."""
REFERENCE_THREADS = 2
"""Reference runs at once in this process."""


class CheckPolicy:
    """Whether to check a result: probation always, else the rate scaled by work share."""

    def __init__(self, rate: float, seed: int | None = None) -> None:
        if not 0 <= rate <= 1:
            raise ValueError("spot-check rate must be between 0 and 1")
        self.rate = rate
        self.rng = random.Random(seed)
        self.recent: deque[str] = deque(maxlen=RECENT)
        self.served: Counter[str] = Counter()

    def served_by(self, worker: str) -> None:
        if len(self.recent) == self.recent.maxlen:
            gone = self.recent[0]
            self.served[gone] -= 1
            if self.served[gone] <= 0:
                del self.served[gone]
        self.recent.append(worker)
        self.served[worker] += 1

    def rate_for(self, worker: str) -> float:
        """The steady-state rate times (share of the recent work x workers serving it)."""
        if self.rate <= 0 or not self.recent:
            return self.rate
        share = self.served[worker] / len(self.recent)
        return min(1.0, self.rate * max(1.0, share * len(self.served)))

    def due(self, worker: str, probation: bool) -> bool:
        """Draw, after the result of ``worker`` arrived, whether to check it."""
        self.served_by(worker)
        return probation or self.rng.random() < self.rate_for(worker)


class Reference:
    """The requester's own answer to a task, from its copy of the model (None: it has none)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._slots = asyncio.Semaphore(REFERENCE_THREADS)

    def holds(self, model: str, sha256: str | None = None) -> bool:
        return self.registry is not None and self.registry.find(model, sha256) is not None

    async def run(
        self, model: str, sha256: str | None, inputs: Mapping[str, np.ndarray] | np.ndarray
    ) -> TaskOutcome | None:
        spec = self.registry.find(model, sha256) if self.registry is not None else None
        if spec is None:
            return None
        if isinstance(inputs, np.ndarray):
            inputs = {spec.inputs[0].name: inputs}
        async with self._slots:
            try:
                loaded = await asyncio.to_thread(self.registry.load, spec)
                outputs = await asyncio.to_thread(loaded.run, dict(inputs))
            except Exception as exc:  # our own copy cannot say: the check is not made
                log.warning("blind check of %s not made: %s", model, exc)
                return None
        outputs = {k: np.asarray(v) for k, v in outputs.items()}
        return TaskOutcome(
            task_id="reference",
            ok=True,
            model=model,
            worker=None,
            latency_s=0.0,
            attempts=0,
            outputs=outputs,
            digest=protocol.digest_tensors(protocol.tensor_map(outputs)),
            label_output=spec.label_output,
        )
