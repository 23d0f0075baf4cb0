"""Which worker gets the next attempt: a share that follows what we measured, not what a
worker claims. Pure (no I/O); the scheduler calls :meth:`WorkShare.pick`.

**Measured, per (worker, model).** ``service``: an EWMA of the time its completed attempts
took (send to reply); ``success``: an EWMA of its attempts' fate (1 done, 0 failed, timed out
or refused). A worker's cost is the expected wait for one good answer, least outstanding
requests weighted by latency (Finagle's and Linkerd's "peak EWMA")::

    cost = (in flight + queue it reports + 1) * service / success * trust factor * jitter

A worker not yet measured for the model is priced by our own round trips to it (pings), else
like the typical one (the median of the measured workers' service): it is tried soon, and
nothing it *says* buys it a head start.
The queue a worker reports can only raise its cost. Once its latency is known, a worker that
claims 10^6 slots gets the share its answers earn, like any other.

**Claims cap.** A worker never has more than ``slots_per_capacity`` x its advertised
``capacity`` of our attempts in flight (it runs ``capacity`` at once; the rest wait in its
queue, enough that it never idles between our tasks). 128 a slot: a 2-core worker takes 256,
what a node queues by default (``queue_limit``); a lower cap only makes the requester queue
what the worker would have queued, a wake-up more per task (measured: 64 slots cost a third
of the 1-worker throughput at 100 tasks in flight). When every candidate is at its cap,
:meth:`pick` returns ``None`` and the scheduler waits for a slot.

**Probation** (:meth:`netcore.trust.manager.TrustManager.on_probation`: a new identity, or one
back from quarantine, until it has passed blind checks). While a worker off probation has a
free slot, a worker on probation gets at most one attempt in flight, and all of them together
at most ``probation_share`` of the attempts in flight (at least one): enough work for its
results to be checked, never the bulk of it. When no worker off probation has a free slot
(a fresh swarm, or the settled ones are full), probation workers take the work up to their
caps: nothing better exists to give it to, and a run with no checking at all (``--redundancy
1`` without ``--spot-check``), where probation never ends, is never starved by it.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from netcore.net.peers import Peer

__all__ = ["WorkShare"]


@dataclass(slots=True)
class _Measured:
    service: float | None
    """None until an attempt succeeds (a failure has no service time of its own)."""
    success: float = 1.0
    samples: int = 1


@dataclass
class WorkShare:
    alpha: float = 0.2
    """Weight of the newest sample in each EWMA."""
    slots_per_capacity: int = 128
    probation_share: float = 0.1
    default_service: float = 0.005
    """Seconds assumed for one attempt while no worker is measured for the model."""
    limit: int = 4096
    _seen: dict[tuple[str, str], _Measured] = field(default_factory=dict)

    # --- what we observed -------------------------------------------------------------------

    def observe(self, peer_id: str, model: str, seconds: float | None) -> None:
        """One attempt's fate: ``seconds`` it took when it succeeded, ``None`` when it failed."""
        key = (peer_id, model)
        m = self._seen.get(key)
        ok = seconds is not None
        if m is None:
            if len(self._seen) >= self.limit:
                del self._seen[next(iter(self._seen))]
            # Success starts from 1 (the prior) and moves by alpha, like every later attempt.
            start = max(seconds, 1e-5) if seconds is not None else None
            self._seen[key] = _Measured(start, 1.0 if ok else 1.0 - self.alpha)
            return
        a = self.alpha
        if seconds is not None:
            sample = max(seconds, 1e-5)
            m.service = sample if m.service is None else (1 - a) * m.service + a * sample
        m.success = (1 - a) * m.success + a * (1.0 if ok else 0.0)
        m.samples += 1

    def forget(self, peer_id: str) -> None:
        for key in [k for k in self._seen if k[0] == peer_id]:
            del self._seen[key]

    def measured(self, peer_id: str, model: str) -> tuple[float, float] | None:
        """(service seconds, success rate) of a worker for a model, or None."""
        m = self._seen.get((peer_id, model))
        return (m.service or 0.0, m.success) if m is not None else None

    def typical(self, model: str) -> float:
        values = [
            m.service
            for (_, name), m in self._seen.items()
            if name == model and m.service is not None
        ]
        return statistics.median(values) if values else self.default_service

    # --- choosing -------------------------------------------------------------------------

    def slots(self, peer: Peer) -> int:
        return max(1, peer.capacity) * self.slots_per_capacity

    def cost(self, peer: Peer, model: str, typical: float | None, factor: float = 1.0) -> float:
        """``typical``: the median measured service for the model (None: computed if needed)."""
        m = self._seen.get((peer.peer_id, model))
        success = m.success if m is not None else 1.0
        if m is not None and m.service is not None:
            service = m.service
        else:  # our own round trips to it (pings, other models' tasks), else the typical one
            if peer.rtt is not None:
                service = peer.rtt
            else:
                service = typical if typical is not None else self.typical(model)
        service = max(service, 0.0002)
        outstanding = peer.inflight + max(0, peer.remote_queued) + 1
        return outstanding * service / max(success, 0.05) * factor

    def pick(
        self,
        peers: Sequence[Peer],
        model: str,
        *,
        factor: Callable[[Peer], float] | None = None,
        probation: Callable[[Peer], bool] | None = None,
        inflight_total: int = 0,
    ) -> Peer | None:
        """The cheapest worker of ``peers`` with a free slot; None when all are full."""
        open_ = [p for p in peers if p.inflight < self.slots(p)]
        if not open_:
            return None
        if probation is not None:
            trial = [p for p in open_ if probation(p)]
            if trial and len(trial) < len(open_):
                on_trial = {p.peer_id for p in trial}
                settled = [p for p in open_ if p.peer_id not in on_trial]
                busy = sum(p.inflight for p in trial)
                bound = max(1.0, self.probation_share * (inflight_total + 1))
                allowed = [p for p in trial if p.inflight == 0 and busy < bound]
                open_ = settled + allowed
        unknown = any(p.rtt is None and (p.peer_id, model) not in self._seen for p in open_)
        typical = self.typical(model) if unknown else None

        def weigh(p: Peer) -> float:
            f = factor(p) if factor is not None else 1.0
            return self.cost(p, model, typical, f) * (0.9 + 0.2 * random.random())

        return min(open_, key=weigh)
