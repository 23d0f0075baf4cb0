"""The blind checks of one verifier (:mod:`netcore.tasks.verify`): which results to check,
who checks them, and what a mismatch does.

* A result of a worker on **probation** is always checked, before it is handed on; other
  results at the rate of :class:`netcore.tasks.blind.CheckPolicy`.
* The check re-runs the task's own input (:mod:`netcore.tasks.blind`): on our copy of the
  model when we hold the version the worker ran, else on an established worker of another
  host (not on probation, not quarantined).
* A match is recorded as ``spot_passed`` (three end a probation); a **mismatch convicts** the
  worker: ``spot_failed``, recorded until its reputation quarantines it (a proven lie), and the
  verifier re-issues what it supplied that is not final yet (:meth:`convicted_since`).
* **Probation trials**: in a vote, workers on probation are not voters; a task also goes to
  each of them (one trial at a time each) and the answer is checked, so a new worker earns
  its vote on real inputs and a Sybil identity is caught before it ever votes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from netcore.tasks.blind import CheckPolicy, Reference
from netcore.tasks.outcome import TaskOutcome
from netcore.tasks.voters import Electorate, electorate
from netcore.tasks.votes import VerifyStats, VoteKeys

log = logging.getLogger("p2pai.verify")

CONVICT_MAX_RECORDS = 256
"""A bound on the ``spot_failed`` records one conviction adds while quarantine has not come."""

Inputs = Mapping[str, np.ndarray] | np.ndarray


class Checker:
    """Blind checks, probation trials and convictions for one :class:`Verifier`."""

    def __init__(
        self, node: Any, keys: VoteKeys, stats: VerifyStats, rate: float, seed: int | None = None
    ) -> None:
        self.node = node
        self.keys = keys
        self.stats = stats
        self.policy = CheckPolicy(rate, seed)
        self.reference = Reference(getattr(node, "registry", None))
        self.convicted: dict[str, float] = {}
        """Workers a check proved wrong, and when."""
        self.changed = asyncio.Event()
        """Set when a check passed or convicted: waiting votes look again."""
        self.hosts_voted: set[str] = set()
        self._trials: Counter[str] = Counter()

    # --- who is who ------------------------------------------------------------------------

    def host(self, peer_id: str) -> str:
        scheduler = getattr(self.node, "scheduler", None)
        return scheduler.host(peer_id) if scheduler is not None else peer_id

    def on_probation(self, peer_id: str) -> bool:
        probation = getattr(getattr(self.node, "trust", None), "on_probation", None)
        return bool(probation(peer_id)) if probation is not None else False

    def electorate(self, model: str, sha256: str | None) -> Electorate:
        """Usable workers of ``model`` now; the convicted ones are out whatever the trust says."""
        usable = [p.peer_id for p in self.node.scheduler.candidates(model, sha256)]
        usable = [p for p in usable if p not in self.convicted]
        return electorate(usable, self.host, self.on_probation)

    def can_check(self, model: str, sha256: str | None) -> bool:
        return self.reference.holds(model, sha256) or bool(self.electorate(model, sha256).voters)

    def convicted_since(self, worker: str | None, started: float) -> bool:
        """Did a check prove ``worker`` wrong after ``started`` (its result is not final)?"""
        return worker is not None and self.convicted.get(worker, -1.0) >= started

    # --- checks ----------------------------------------------------------------------------

    async def maybe_check(
        self, model: str, sha256: str | None, inputs: Inputs, outcome: TaskOutcome
    ) -> bool | None:
        """Draw whether to check ``outcome``; True passed, False convicted, None not checked."""
        worker = outcome.worker
        if not outcome.ok or not worker or worker == self.node.scheduler.local_peer_id:
            return None
        if not self.policy.due(worker, self.on_probation(worker)):
            return None
        return await self.check(model, sha256, inputs, outcome)

    async def check(
        self, model: str, sha256: str | None, inputs: Inputs, outcome: TaskOutcome
    ) -> bool | None:
        worker = outcome.worker or ""
        expected = await self._expected(model, sha256, inputs, worker)
        if expected is None:
            return None
        self.stats.checked += 1
        if self.keys.same(self.keys.key(model, expected), self.keys.key(model, outcome)):
            self._record(worker, "spot_passed")
            self.changed.set()
            return True
        self.convict(worker, model, self.keys.describe(model, outcome),
                     self.keys.describe(model, expected))  # fmt: skip
        return False

    async def _expected(
        self, model: str, sha256: str | None, inputs: Inputs, worker: str
    ) -> TaskOutcome | None:
        if self.reference.holds(model, sha256) and self._same_version(worker, model, sha256):
            return await self.reference.run(model, sha256, inputs)
        others = [
            p
            for p in self.electorate(model, sha256).voters
            if p != worker and self.host(p) != self.host(worker)
        ]
        if not others:
            return None
        outcome: TaskOutcome = await self.node.submit(
            model, inputs, sha256=sha256, pin=others[0], allow_local=False, max_attempts=1
        )
        return outcome if outcome.ok and outcome.worker == others[0] else None

    def _same_version(self, worker: str, model: str, sha256: str | None) -> bool:
        """Our copy is the version the worker ran: it holds ours, or none (it fetched ours)."""
        ours = sha256 or self.reference.registry.sha_of(model)
        peer = self.node.peers.get(worker)
        entries = [m for m in getattr(peer, "models", []) if m.get("name") == model]
        return not entries or any(m.get("sha256") == ours for m in entries)

    # --- probation trials ------------------------------------------------------------------

    def trials(
        self,
        model: str,
        sha256: str | None,
        inputs: Inputs,
        probation: list[str],
        spawn: Callable[[Any], Any],
    ) -> None:
        """Send this task to each worker on probation without a trial in flight."""
        if not probation or not self.can_check(model, sha256):
            return
        for worker in probation:
            if self._trials[worker] == 0:
                self._trials[worker] += 1
                spawn(self._trial(model, sha256, inputs, worker))

    async def _trial(self, model: str, sha256: str | None, inputs: Inputs, worker: str) -> None:
        try:
            self.stats.trials += 1
            outcome: TaskOutcome = await self.node.submit(
                model, inputs, sha256=sha256, pin=worker, allow_local=False, max_attempts=1
            )
            if outcome.ok and outcome.worker == worker:
                await self.check(model, sha256, inputs, outcome)
        finally:
            self._trials[worker] -= 1
            if self._trials[worker] <= 0:
                del self._trials[worker]

    # --- convictions -----------------------------------------------------------------------

    def convict(self, worker: str, model: str, got: str, want: str) -> None:
        """A proven lie: quarantine ``worker`` (reputation) and remember it."""
        self.stats.mismatches += 1
        log.warning(
            "worker %s failed a blind check on %s: answered %s, the check says %s; quarantined",
            worker[:8], model, got, want,
        )  # fmt: skip
        first = worker not in self.convicted
        self.convicted[worker] = time.monotonic()
        if first:
            self.stats.quarantined += 1
        trust = getattr(self.node, "trust", None)
        quarantined = getattr(trust, "quarantined", None)
        self._record(worker, "spot_failed")
        for _ in range(CONVICT_MAX_RECORDS):
            if quarantined is None or quarantined(worker):
                break
            self._record(worker, "spot_failed")
        self.changed.set()

    def _record(self, peer_id: str, counter: str) -> None:
        trust = getattr(self.node, "trust", None)
        if peer_id and trust is not None:
            trust.record(peer_id, counter)
