"""Verified results: redundant execution with a majority vote, and spot checks.

A layer over :meth:`Node.submit` (and so :meth:`Scheduler.submit`), used by
``p2pai submit --redundancy K --vote digest|label --spot-check RATE`` and the console's
verified mode.

**Redundancy.** Each task goes to ``K`` distinct workers (one attempt each; the attempts
share one ``exclude`` set, so no worker ever answers twice for one task). Results are compared
by ``digest`` (bit-identical outputs) or by the model's ``label_output`` (the class label, for
float outputs that differ between hardware). The first answer that a strict majority of ``K``
(``K // 2 + 1``) agrees on is accepted at once; attempts still running finish in the
background and are scored too. When a majority can no longer be reached (disagreement,
failures), more distinct workers are asked, up to ``K`` extra; failing that the task fails with
a reason that lists the answers. Agreeing with the accepted answer counts as a vote won,
disagreeing as a vote lost (:mod:`netcore.trust.reputation`); without a majority nobody is scored.

**Spot checks.** At a set rate (a share of the tasks submitted) the requester also sends a
known-answer task: a held-out sample whose label the reference model gets right, to the
usable worker checked least so far. A wrong label is a failed spot check. A worker cannot
tell such tasks from real ones.

The vote counting lives in :mod:`netcore.tasks.votes`, the known-answer samples in
:mod:`netcore.tasks.spot_checks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from netcore.tasks.scheduler import TERMINAL_CODES, TaskOutcome
from netcore.tasks.spot_checks import SpotChecker
from netcore.tasks.votes import (
    MAX_REDUNDANCY,
    VOTE_MODES,
    VerifiedOutcome,
    VerifyStats,
    VoteKeys,
    no_majority_reason,
    quarantine_note,
)
from netcore.wire import protocol

log = logging.getLogger("p2pai.verify")


class Verifier:
    """``submit()`` like :meth:`Node.submit`, with redundancy and spot checks."""

    def __init__(
        self,
        node: Any,
        redundancy: int = 3,
        vote: str = "digest",
        extra: int | None = None,
        spot: SpotChecker | None = None,
    ) -> None:
        if not 1 <= redundancy <= MAX_REDUNDANCY:
            raise ValueError(f"redundancy must be 1 to {MAX_REDUNDANCY}")
        if vote not in VOTE_MODES:
            raise ValueError(f"vote must be one of {', '.join(VOTE_MODES)}")
        self.node = node
        self.redundancy = redundancy
        self.extra = redundancy if extra is None else extra
        self.spot = spot
        self.stats = VerifyStats()
        self.keys = VoteKeys(node, vote)
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def quorum(self) -> int:
        return self.redundancy // 2 + 1

    # --- reputation hooks (a node without trust still works) -----------------------------

    def _record(self, peer_id: str | None, counter: str) -> None:
        trust = getattr(self.node, "trust", None)
        if peer_id and trust is not None:
            trust.record(peer_id, counter)

    def _usable(self, model: str, sha256: str | None) -> list[str]:
        return [p.peer_id for p in self.node.scheduler.candidates(model, sha256)]

    # --- public API ------------------------------------------------------------------------

    async def submit(
        self, model: str, inputs: Mapping[str, np.ndarray] | np.ndarray, **options: Any
    ) -> TaskOutcome:
        """Run one task verified; never raises for task failures."""
        if self.spot is not None:
            for _ in range(self.spot.due(model)):
                self._spawn(self._spot_check(model))
        self.stats.tasks += 1
        if self.redundancy == 1:
            return await self.node.submit(model, inputs, **options)
        return await self._vote(model, inputs, dict(options))

    async def aclose(self) -> None:
        """Cancel the attempts and spot checks still running in the background."""
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # --- voting ----------------------------------------------------------------------------

    async def _vote(
        self, model: str, inputs: Mapping[str, np.ndarray] | np.ndarray, options: dict[str, Any]
    ) -> TaskOutcome:
        started = time.monotonic()
        k, quorum = self.redundancy, self.quorum
        task_id = options.pop("task_id", None) or protocol.new_id().hex()[:16]
        for dropped in ("pin", "exclude", "allow_local", "max_attempts"):
            options.pop(dropped, None)
        sha256 = options.get("sha256")
        usable = self._usable(model, sha256)
        if len(usable) < k:
            self.stats.too_few_workers += 1
            return self._failed(
                task_id, model, started, 0, "too_few_workers",
                f"redundancy {k} needs {k} distinct usable workers with model {model!r}; "
                f"{len(usable)} usable{quarantine_note(self.node.peers)}",
            )  # fmt: skip
        claimed: set[str] = set()

        def launch() -> asyncio.Task[TaskOutcome]:
            return self._spawn(
                self.node.submit(
                    model, inputs, task_id=task_id, exclude=claimed, allow_local=False,
                    max_attempts=1, **options,
                )
            )  # fmt: skip

        pending: set[asyncio.Task[TaskOutcome]] = {launch() for _ in range(k)}
        launched = k
        extra_left = self.extra
        groups: dict[bytes, list[TaskOutcome]] = {}
        failures: list[TaskOutcome] = []
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    outcome = task.result()
                    if outcome.ok:
                        groups.setdefault(self.keys.key(model, outcome), []).append(outcome)
                    else:
                        failures.append(outcome)
                        if outcome.error_code in TERMINAL_CODES:
                            # No worker would answer otherwise (bad input): stop at once.
                            for other in pending:
                                other.cancel()
                            return self._failed(
                                task_id, model, started, launched, outcome.error_code,
                                outcome.error,
                            )  # fmt: skip
                best_key, best = max(groups.items(), key=lambda kv: len(kv[1]), default=(b"", []))
                if len(best) >= quorum:
                    return self._accept(
                        model, task_id, started, launched, best_key, groups, pending
                    )
                short = quorum - len(best) - len(pending)
                if short > 0:
                    free = [p for p in self._usable(model, sha256) if p not in claimed]
                    if extra_left < short or len(free) < short:
                        for other in pending:
                            other.cancel()
                        break
                    for _ in range(short):
                        pending.add(launch())
                    launched += short
                    extra_left -= short
                    self.stats.extra_attempts += short
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()
            raise
        self.stats.no_majority += 1
        return self._failed(
            task_id, model, started, launched, "no_majority",
            no_majority_reason(
                k, groups, failures, launched,
                lambda outcome: self.keys.describe(model, outcome),
                quarantine_note(self.node.peers),
            ),
        )  # fmt: skip

    def _accept(
        self,
        model: str,
        task_id: str,
        started: float,
        launched: int,
        winner: bytes,
        groups: dict[bytes, list[TaskOutcome]],
        pending: set[asyncio.Task[TaskOutcome]],
    ) -> VerifiedOutcome:
        self.stats.accepted += 1
        voters: list[str] = []
        dissenters: list[str] = []
        for key, members in groups.items():
            for member in members:
                voters.append(member.worker or "")
                if key == winner:
                    self._won(member.worker)
                else:
                    dissenters.append(member.worker or "")
                    self._lost(model, member)
        if pending:
            self._spawn(self._score_late(model, winner, pending))
        first = groups[winner][0]
        return VerifiedOutcome(
            task_id=task_id,
            ok=True,
            model=model,
            worker=first.worker,
            latency_s=time.monotonic() - started,
            attempts=launched,
            outputs=first.outputs,
            took_us=first.took_us,
            digest=first.digest,
            label_output=self.keys.label_name(model, first) or first.label_output,
            redundancy=self.redundancy,
            agreeing=len(groups[winner]),
            voters=voters,
            dissenters=dissenters,
        )

    def _won(self, worker: str | None) -> None:
        self.stats.votes_won += 1
        self._record(worker, "votes_won")

    def _lost(self, model: str, outcome: TaskOutcome) -> None:
        self.stats.votes_lost += 1
        log.info(
            "worker %s disagreed with the majority on a %s task (%s)",
            (outcome.worker or "?")[:8], model, self.keys.describe(model, outcome),
        )  # fmt: skip
        self._record(outcome.worker, "votes_lost")

    async def _score_late(
        self, model: str, winner: bytes, pending: set[asyncio.Task[TaskOutcome]]
    ) -> None:
        """Attempts that answered after the vote was decided still win or lose it."""
        for task in asyncio.as_completed(pending):
            try:
                outcome = await task
            except asyncio.CancelledError:
                continue
            if not outcome.ok:
                continue  # the scheduler already counted its failure or timeout
            if self.keys.key(model, outcome) == winner:
                self._won(outcome.worker)
            else:
                self._lost(model, outcome)

    def _failed(
        self, task_id: str, model: str, started: float, attempts: int, code: str, message: str
    ) -> VerifiedOutcome:
        return VerifiedOutcome(
            task_id=task_id,
            ok=False,
            model=model,
            worker=None,
            latency_s=time.monotonic() - started,
            attempts=attempts,
            error_code=code,
            error=message,
            redundancy=self.redundancy,
        )

    # --- spot checks -----------------------------------------------------------------------

    async def _spot_check(self, model: str) -> None:
        spot = self.spot
        assert spot is not None
        target = spot.pick(self._usable(model, None))
        if target is None:
            return
        sample, expected = spot.sample()
        self.stats.spot_checks += 1
        outcome = await self.node.submit(
            model, sample, pin=target, allow_local=False, max_attempts=1
        )
        if not outcome.ok or outcome.worker != target:
            return  # a failure or timeout: the scheduler counted it already
        name = self.keys.label_name(model, outcome)
        got = spot.answer(outcome.outputs.get(name) if name else None)
        if got == expected:
            self.stats.spot_passed += 1
            self._record(target, "spot_passed")
        else:
            self.stats.spot_failed += 1
            log.warning(
                "worker %s failed a spot check on %s: answered %s, the known answer is %s",
                target[:8], model, got, expected,
            )  # fmt: skip
            self._record(target, "spot_failed")


# --- for the command line and the console ----------------------------------------------------


def build_verifier(
    node: Any,
    model: str,
    redundancy: int = 1,
    vote: str = "digest",
    spot_rate: float = 0.0,
    samples: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> Any:
    """``node`` itself when there is nothing to verify, else a :class:`Verifier` over it
    (spot checks drawn from ``samples`` with ``labels``)."""
    if redundancy <= 1 and spot_rate <= 0:
        return node
    spot = None
    if spot_rate > 0 and samples is not None and labels is not None:
        spot = SpotChecker.from_reference(
            model, samples, labels, spot_rate, registry=getattr(node, "registry", None)
        )
    return Verifier(node, redundancy=redundancy, vote=vote, spot=spot)


def verify_summary(stats: Mapping[str, int], redundancy: int, vote: str) -> str:
    """One line for ``p2pai submit``'s summary."""
    parts = []
    if redundancy > 1:
        parts.append(
            f"verified x{redundancy} by {vote}: {stats['accepted']} accepted, "
            f"{stats['no_majority']} without majority, {stats['too_few_workers']} too few workers, "
            f"votes lost {stats['votes_lost']}/{stats['votes_won'] + stats['votes_lost']}"
        )
    if stats.get("spot_checks"):
        parts.append(f"spot checks: {stats['spot_checks']} sent, {stats['spot_failed']} failed")
    return "; ".join(parts)
