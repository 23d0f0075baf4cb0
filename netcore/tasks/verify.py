"""Verified results: quorum votes over distinct hosts, blind checks, probation.

A layer over :meth:`Node.submit` (and so :meth:`Scheduler.submit`), used by
``p2pai submit --redundancy K --vote digest|label --spot-check RATE`` and the console's
verified mode.

**Quorum votes.** A result is accepted when ``q = K // 2 + 1`` distinct voters agree. A voter
is a usable worker that is not on probation, and voters are hosts, not keys
(:mod:`netcore.tasks.voters`): the replicas of one task go to workers on distinct hosts where
there are at least ``q`` hosts, else to distinct workers (the summary says how many hosts
voted). A task starts with ``K`` replicas where ``K`` voters are usable, else with as many as
there are (at least ``q``), and more go to fresh voters only on disagreement, up to ``K`` extra.
With fewer than ``q`` voters the task **waits** for voters (counted in ``waiting``; the console
shows it) until its wait runs out (``wait_s``: ``submit --timeout``), then fails
``too_few_workers``. Results are compared by ``digest`` (bit-identical outputs) or by the
model's ``label_output``. Agreeing with the accepted answer counts as a vote won, disagreeing
as a vote lost (:mod:`netcore.trust.reputation`); without a majority nobody is scored.

**Blind checks** (:mod:`netcore.tasks.checking`): real task inputs, drawn after the result
arrived, re-run by the requester (or an established worker of another host). Every result of
a worker on probation is checked before it is handed on, the others at the ``--spot-check``
rate scaled by the worker's share of the work. A mismatch quarantines the worker, and what it
supplied that is **not final** is re-issued elsewhere: a result is final once this verifier
returned it (``submit`` prints it then); the results held for their check and the attempts
still in flight on the convicted worker are not, and are re-issued. In a vote, workers on
probation get probation trials (the same input, checked) until they pass.

**Known-answer checks** (an extra, :mod:`netcore.tasks.spot_checks`): at the same rate, a
held-out labelled sample to the usable worker checked least so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from netcore.tasks.checking import Checker
from netcore.tasks.scheduler import TERMINAL_CODES, TaskOutcome
from netcore.tasks.spot_checks import SpotChecker
from netcore.tasks.verify_report import verify_summary
from netcore.tasks.voters import Electorate
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

__all__ = ["Verifier", "build_verifier", "verify_summary"]

log = logging.getLogger("p2pai.verify")

WAIT_S = 30.0
"""How long a task waits for voters by default (``submit`` passes its ``--timeout``)."""
MAX_REISSUES = 3
"""A task whose results keep failing their checks is re-issued at most this often."""
LOOK_AGAIN_S = 0.5
"""A task waiting for voters looks again at least this often."""

Inputs = Mapping[str, np.ndarray] | np.ndarray


class Verifier:
    """``submit()`` like :meth:`Node.submit`, with quorum votes, blind and spot checks."""

    def __init__(
        self,
        node: Any,
        redundancy: int = 3,
        vote: str = "digest",
        extra: int | None = None,
        spot: SpotChecker | None = None,
        check_rate: float = 0.0,
        wait_s: float = WAIT_S,
        seed: int | None = None,
    ) -> None:
        if not 1 <= redundancy <= MAX_REDUNDANCY:
            raise ValueError(f"redundancy must be 1 to {MAX_REDUNDANCY}")
        if vote not in VOTE_MODES:
            raise ValueError(f"vote must be one of {', '.join(VOTE_MODES)}")
        self.node = node
        self.redundancy = redundancy
        self.extra = redundancy if extra is None else extra
        self.spot = spot
        self.wait_s = wait_s
        self.stats = VerifyStats()
        self.keys = VoteKeys(node, vote)
        self.checker = Checker(node, self.keys, self.stats, check_rate, seed)
        self.on_wait: Callable[[str, bool], None] | None = None
        """Told ``(task_id, True)`` when a task starts waiting for voters, False when it ends."""
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def quorum(self) -> int:
        return self.redundancy // 2 + 1

    # --- reputation hooks (a node without trust still works) -----------------------------

    def _record(self, peer_id: str | None, counter: str) -> None:
        trust = getattr(self.node, "trust", None)
        if peer_id and trust is not None:
            trust.record(peer_id, counter)

    def _restore(self, peer_ids: list[str]) -> None:
        restore = getattr(getattr(self.node, "trust", None), "restore_votes", None)
        dissenters = [p for p in peer_ids if p]
        if restore is not None and dissenters:
            self.stats.votes_restored += len(dissenters)
            restore(dissenters)

    def _usable(self, model: str, sha256: str | None) -> list[str]:
        return [p.peer_id for p in self.node.scheduler.candidates(model, sha256)]

    # --- public API ------------------------------------------------------------------------

    async def submit(self, model: str, inputs: Inputs, **options: Any) -> TaskOutcome:
        """Run one task verified; never raises for task failures."""
        if self.spot is not None:
            for _ in range(self.spot.due(model)):
                self._spawn(self._spot_check(model))
        self.stats.tasks += 1
        if self.redundancy == 1:
            return await self._single(model, inputs, dict(options))
        return await self._vote(model, inputs, dict(options))

    async def aclose(self) -> None:
        """Cancel the attempts and checks still running in the background."""
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

    # --- one worker a task: checked blindly ------------------------------------------------

    async def _single(self, model: str, inputs: Inputs, options: dict[str, Any]) -> TaskOutcome:
        sha256 = options.get("sha256")
        outcome: TaskOutcome | None = None
        for _ in range(MAX_REISSUES + 1):
            started = time.monotonic()
            if self.checker.convicted:
                options["exclude"] = set(self.checker.convicted)
            outcome = await self.node.submit(model, inputs, **options)
            if not outcome.ok:
                return outcome
            if self.checker.convicted_since(outcome.worker, started):
                self.stats.reissued += 1  # it arrived after its worker was caught lying
                continue
            if await self.checker.maybe_check(model, sha256, inputs, outcome) is False:
                self.stats.reissued += 1
                continue
            return outcome
        assert outcome is not None
        return self._failed(
            outcome.task_id, model, time.monotonic(), MAX_REISSUES + 1, "check_failed",
            f"the results of {MAX_REISSUES + 1} workers failed their blind checks",
        )  # fmt: skip

    # --- voting ----------------------------------------------------------------------------

    async def _vote(self, model: str, inputs: Inputs, options: dict[str, Any]) -> TaskOutcome:
        task_id = options.pop("task_id", None) or protocol.new_id().hex()[:16]
        for dropped in ("pin", "exclude", "exclude_hosts", "allow_local", "max_attempts"):
            options.pop(dropped, None)
        outcome: TaskOutcome | None = None
        for _ in range(MAX_REISSUES + 1):
            outcome = await self._vote_once(model, inputs, task_id, options)
            if not isinstance(outcome, VerifiedOutcome) or not outcome.ok:
                return outcome
            # The steady-state blind check of the accepted answer: a majority can lie too.
            if self.checker.policy.rate <= 0 or outcome.worker is None:
                return outcome
            if not self.checker.policy.due(outcome.worker, False):
                return outcome
            passed = await self.checker.check(model, options.get("sha256"), inputs, outcome)
            if passed is not False:
                return outcome
            for worker in outcome.voters:
                if worker not in outcome.dissenters and worker != outcome.worker:
                    self.checker.convict(worker, model, "the accepted answer", "otherwise")
            # The majority was shown wrong: those who lost the vote to it get their vote back.
            self._restore(outcome.dissenters)
            self.stats.reissued += 1
        assert outcome is not None
        return outcome

    async def _await_voters(
        self, task_id: str, model: str, sha256: str | None, inputs: Inputs, started: float
    ) -> Electorate | None:
        """The electorate once it has a quorum of voters, else None when the wait ran out;
        workers on probation get trials meanwhile."""
        quorum, waiting = self.quorum, False
        try:
            while True:
                found = self.checker.electorate(model, sha256)
                self.checker.trials(model, sha256, inputs, found.probation, self._spawn)
                if found.replicas(self.redundancy, quorum)[0]:
                    return found
                remaining = started + self.wait_s - time.monotonic()
                if remaining <= 0:
                    return None
                if not waiting:
                    waiting = True
                    self.stats.waiting += 1
                    self.stats.waited += 1
                    log.info("task %s waits for voters: %d usable, %d needed",
                             task_id[:8], len(found.voters), quorum)  # fmt: skip
                    if self.on_wait is not None:
                        self.on_wait(task_id, True)
                self.checker.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        self.checker.changed.wait(), min(remaining, LOOK_AGAIN_S)
                    )
        finally:
            if waiting:
                self.stats.waiting -= 1
                if self.on_wait is not None:
                    self.on_wait(task_id, False)

    async def _vote_once(
        self, model: str, inputs: Inputs, task_id: str, options: dict[str, Any]
    ) -> TaskOutcome:
        started = time.monotonic()
        k, quorum = self.redundancy, self.quorum
        sha256 = options.get("sha256")
        found = await self._await_voters(task_id, model, sha256, inputs, started)
        if found is None:
            self.stats.too_few_workers += 1
            usable = self._usable(model, sha256)
            return self._failed(
                task_id, model, started, 0, "too_few_workers",
                f"redundancy {k} needs {quorum} voters (usable workers past probation) with "
                f"model {model!r}; {len(usable)} usable, after waiting {self.wait_s:g}s"
                f"{quarantine_note(self.node.peers)}",
            )  # fmt: skip
        replicas, by_host = found.replicas(k, quorum)
        # Workers on probation never vote: claimed from the start.
        claimed: set[str] = set(found.probation) | set(self.checker.convicted)
        hosts: set[str] | None = set() if by_host else None

        def launch() -> asyncio.Task[TaskOutcome]:
            return self._spawn(
                self.node.submit(
                    model, inputs, task_id=task_id, exclude=claimed, exclude_hosts=hosts,
                    allow_local=False, max_attempts=1, **options,
                )
            )  # fmt: skip

        pending: set[asyncio.Task[TaskOutcome]] = {launch() for _ in range(replicas)}
        launched = replicas
        extra_left = self.extra
        groups: dict[bytes, list[TaskOutcome]] = {}
        failures: list[TaskOutcome] = []
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    outcome = task.result()
                    if outcome.ok and self.checker.convicted_since(outcome.worker, started):
                        failures.append(outcome)  # caught lying meanwhile: it does not count
                    elif outcome.ok:
                        key = self.keys.group(groups, self.keys.key(model, outcome))
                        groups.setdefault(key, []).append(outcome)
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
                    now = self.checker.electorate(model, sha256)
                    free = [p for p in now.voters if p not in claimed]
                    fresh = (
                        len({self.checker.host(p) for p in free} - hosts)
                        if hosts is not None
                        else len(free)
                    )
                    if extra_left < short or fresh < short:
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
        hosts: set[str] = set()
        for key, members in groups.items():
            for member in members:
                voters.append(member.worker or "")
                hosts.add(self.checker.host(member.worker or ""))
                if key == winner:
                    self._won(member.worker)
                else:
                    dissenters.append(member.worker or "")
                    self._lost(model, member)
        self.checker.hosts_voted |= hosts
        self.stats.hosts_voted = len(self.checker.hosts_voted)
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
            hosts=len(hosts),
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
            if self.keys.same(self.keys.key(model, outcome), winner):
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
            # Not a blind check's pass (``spot_passed``): a held-out sample can be recognised,
            # so passing one ends no probation. Failing one is a lie all the same.
            self.stats.spot_passed += 1
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
    wait_s: float | None = None,
) -> Any:
    """``node`` itself when there is nothing to verify, else a :class:`Verifier` over it: blind
    checks at ``spot_rate`` (and probation), known-answer checks from ``samples`` with
    ``labels`` when there are labels; a vote waits up to ``wait_s`` for voters."""
    if redundancy <= 1 and spot_rate <= 0:
        return node
    spot = None
    if spot_rate > 0 and samples is not None and labels is not None:
        spot = SpotChecker.from_reference(
            model, samples, labels, spot_rate, registry=getattr(node, "registry", None)
        )
    return Verifier(
        node,
        redundancy=redundancy,
        vote=vote,
        spot=spot,
        check_rate=spot_rate,
        wait_s=WAIT_S if wait_s is None else wait_s,
    )
