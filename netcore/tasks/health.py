"""What the requester learns from its own attempts: how long a worker usually takes (to set
per-attempt timeouts) and which workers keep failing (to rest them). Pure, clock-injected.

Timeouts follow TCP's retransmission timer (RFC 6298): a smoothed round trip and its mean
deviation per (worker, model); an attempt gets ``srtt + 4 * rttvar``, never less than a floor
and never more than the caller's budget, doubled for each earlier attempt of the same task so
that a task that really is slow still gets through. Until a few samples exist the caller's
budget applies unchanged.

A worker whose attempts fail ``rest_after`` times in a row is rested (tried only when no other
worker can take the task) for a time that doubles with each further failure, up to
``max_rest``; one success ends it.

A worker that answered ``unknown_model`` (it lacks the model and could not fetch it) is not
failing: it is remembered as lacking that model for ``memory`` seconds (:class:`ModelGaps`),
and other workers are preferred for it meanwhile, without resting it or touching its
reputation (an honest worker behind a model store it cannot write is no liar; a liar that
says so costs at most one attempt per task and per ``memory``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Rtt:
    srtt: float
    rttvar: float
    samples: int = 1


@dataclass
class AttemptTimer:
    floor: float = 0.5
    min_samples: int = 5
    _rtt: dict[tuple[str, str], _Rtt] = field(default_factory=dict)

    def observe(self, peer_id: str, model: str, seconds: float) -> None:
        key = (peer_id, model)
        rtt = self._rtt.get(key)
        if rtt is None:
            self._rtt[key] = _Rtt(seconds, seconds / 2)
            return
        rtt.rttvar = 0.75 * rtt.rttvar + 0.25 * abs(rtt.srtt - seconds)
        rtt.srtt = 0.875 * rtt.srtt + 0.125 * seconds
        rtt.samples += 1

    def timeout(self, peer_id: str, model: str, budget: float, attempt: int = 0) -> float:
        """Seconds to wait for this attempt (``attempt`` counts earlier attempts of the task)."""
        rtt = self._rtt.get((peer_id, model))
        if rtt is None or rtt.samples < self.min_samples:
            return budget
        rto = max(self.floor, rtt.srtt + 4 * rtt.rttvar) * (2**attempt)
        return min(budget, rto)

    def forget(self, peer_id: str) -> None:
        for key in [k for k in self._rtt if k[0] == peer_id]:
            del self._rtt[key]


@dataclass
class RestPolicy:
    rest_after: int = 2
    first_rest: float = 0.5
    max_rest: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, int] = field(default_factory=dict)
    _until: dict[str, float] = field(default_factory=dict)

    def failed(self, peer_id: str) -> float | None:
        """Record a failed attempt; returns the rest it starts, if any."""
        count = self._failures.get(peer_id, 0) + 1
        self._failures[peer_id] = count
        if count < self.rest_after:
            return None
        rest = min(self.max_rest, self.first_rest * 2 ** (count - self.rest_after))
        self._until[peer_id] = self.clock() + rest
        return rest

    def succeeded(self, peer_id: str) -> None:
        self._failures.pop(peer_id, None)
        self._until.pop(peer_id, None)

    def resting(self, peer_id: str) -> bool:
        until = self._until.get(peer_id)
        if until is None:
            return False
        if self.clock() >= until:
            del self._until[peer_id]
            return False
        return True


def backoff(attempt: int, base: float = 0.01, cap: float = 0.5, jitter: float = 0.5) -> float:
    """Pause before retry number ``attempt`` (1 = the first retry): exponential, jittered."""
    import random

    delay = min(cap, base * 2 ** (attempt - 1))
    return delay * (1 - jitter + jitter * random.random())


@dataclass
class ModelGaps:
    """Workers that said they lack a model (``unknown_model``), by (worker, model), for a while."""

    memory: float = 30.0
    limit: int = 4096
    clock: Callable[[], float] = time.monotonic
    _until: dict[tuple[str, str], float] = field(default_factory=dict)

    def lacks(self, peer_id: str, model: str) -> None:
        now = self.clock()
        if len(self._until) >= self.limit:
            self._until = {k: t for k, t in self._until.items() if t > now}
            while len(self._until) >= self.limit:  # still full: forget the oldest
                del self._until[next(iter(self._until))]
        self._until.pop((peer_id, model), None)
        self._until[(peer_id, model)] = now + self.memory

    def lacking(self, peer_id: str, model: str) -> bool:
        until = self._until.get((peer_id, model))
        if until is None:
            return False
        if self.clock() >= until:
            del self._until[(peer_id, model)]
            return False
        return True
