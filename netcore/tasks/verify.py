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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netcore.tasks.scheduler import TERMINAL_CODES, TaskOutcome
from netcore.wire import protocol

log = logging.getLogger("p2pai.verify")

VOTE_MODES = ("digest", "label")
MAX_REDUNDANCY = 9


@dataclass(slots=True)
class VerifiedOutcome(TaskOutcome):
    """A :class:`TaskOutcome` accepted (or refused) by a vote."""

    redundancy: int = 1
    agreeing: int = 0
    """Results in the accepted majority (so far)."""
    voters: list[str] = field(default_factory=list)
    """Workers whose result was compared when the vote ended."""
    dissenters: list[str] = field(default_factory=list)
    """Workers whose result disagreed with the accepted one (when the vote ended)."""


@dataclass(slots=True)
class VerifyStats:
    tasks: int = 0
    accepted: int = 0
    no_majority: int = 0
    too_few_workers: int = 0
    votes_won: int = 0
    votes_lost: int = 0
    extra_attempts: int = 0
    spot_checks: int = 0
    spot_passed: int = 0
    spot_failed: int = 0

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class SpotChecker:
    """Known-answer samples for one model and a rate (a share of tasks, 0-1)."""

    def __init__(
        self,
        model: str,
        samples: np.ndarray,
        labels: np.ndarray,
        rate: float,
        seed: int | None = None,
    ) -> None:
        if not 0 <= rate <= 1:
            raise ValueError("spot-check rate must be between 0 and 1")
        if len(samples) == 0 or len(samples) != len(labels):
            raise ValueError("spot checks need labelled samples")
        self.model = model
        self.samples = samples
        self.labels = labels
        self.rate = rate
        self.rng = random.Random(seed)
        self.credit = 0.0
        self.checked: Counter[str] = Counter()

    @classmethod
    def from_reference(
        cls,
        model: str,
        samples: np.ndarray,
        labels: np.ndarray,
        rate: float,
        registry: Any = None,
        seed: int | None = None,
    ) -> SpotChecker:
        """Keep the samples the reference model (when we hold it) labels right: those have a
        known answer an honest worker gives too."""
        spec = registry.find(model) if registry is not None else None
        if spec is not None and spec.label_output and spec.inputs:
            try:
                loaded = registry.load(spec)
                got = loaded.run({spec.inputs[0].name: samples.astype(spec.inputs[0].dtype)})
                predicted = np.asarray(got[spec.label_output]).reshape(len(samples), -1)[:, 0]
                keep = predicted == np.asarray(labels).reshape(-1)
                if keep.any():
                    samples, labels = samples[keep], np.asarray(labels)[keep]
            except Exception as exc:  # no reference: the dataset's labels stand
                log.debug("spot checks without a reference model: %s", exc)
        return cls(model, samples, np.asarray(labels), rate, seed)

    def due(self, model: str) -> int:
        """Spot checks to send along with one task of ``model``."""
        if model != self.model or self.rate <= 0:
            return 0
        self.credit += self.rate
        count = int(self.credit)
        self.credit -= count
        return count

    def pick(self, peer_ids: list[str]) -> str | None:
        if not peer_ids:
            return None
        least = min(self.checked[p] for p in peer_ids)
        choice = self.rng.choice([p for p in peer_ids if self.checked[p] == least])
        self.checked[choice] += 1
        return choice

    def sample(self) -> tuple[np.ndarray, int]:
        index = self.rng.randrange(len(self.samples))
        return self.samples[index : index + 1], int(np.asarray(self.labels).reshape(-1)[index])


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
        self.vote = vote
        self.extra = redundancy if extra is None else extra
        self.spot = spot
        self.stats = VerifyStats()
        self._labels: dict[str, str | None] = {}
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

    def label_name(self, model: str, outcome: TaskOutcome | None = None) -> str | None:
        """The model's label output: from our own copy if we hold it, else as most workers
        advertise it (never from one answer alone: a liar picks its own)."""
        if model in self._labels:
            return self._labels[model]
        name: str | None = None
        registry = getattr(self.node, "registry", None)
        spec = registry.find(model) if registry is not None else None
        if spec is not None:
            name = spec.label_output
        else:
            seen: Counter[str] = Counter()
            for peer in self.node.peers:
                for entry in peer.models:
                    if entry.get("name") == model and isinstance(entry.get("label_output"), str):
                        seen[entry["label_output"]] += 1
            if seen:
                name = seen.most_common(1)[0][0]
            elif outcome is not None:
                name = outcome.label_output
        if name is not None:
            self._labels[model] = name
        return name

    def vote_key(self, model: str, outcome: TaskOutcome) -> bytes:
        if self.vote == "digest":
            return b"D" + outcome.digest
        name = self.label_name(model, outcome)
        arr = outcome.outputs.get(name) if name else None
        if arr is None:
            return b"missing-label"
        arr = np.ascontiguousarray(arr)
        return b"L" + f"{arr.dtype.str}{arr.shape}".encode() + arr.tobytes()

    def _describe(self, model: str, outcome: TaskOutcome) -> str:
        name = self.label_name(model, outcome)
        arr = outcome.outputs.get(name) if name else None
        if arr is not None and arr.size:
            shown = ",".join(str(v) for v in np.asarray(arr).reshape(-1)[:3].tolist())
            return f"label {shown}"
        return f"digest {outcome.digest.hex()[:8]}"

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
                f"{len(usable)} usable{self._quarantine_note()}",
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
                        groups.setdefault(self.vote_key(model, outcome), []).append(outcome)
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
            self._no_majority_reason(model, groups, failures, launched),
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
            label_output=self.label_name(model, first) or first.label_output,
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
            (outcome.worker or "?")[:8], model, self._describe(model, outcome),
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
            if self.vote_key(model, outcome) == winner:
                self._won(outcome.worker)
            else:
                self._lost(model, outcome)

    def _no_majority_reason(
        self,
        model: str,
        groups: dict[bytes, list[TaskOutcome]],
        failures: list[TaskOutcome],
        launched: int,
    ) -> str:
        parts = []
        for members in sorted(groups.values(), key=len, reverse=True):
            workers = ", ".join((m.worker or "?")[:8] for m in members[:3])
            parts.append(f"{len(members)}x {self._describe(model, members[0])} ({workers})")
        if failures:
            codes = Counter(f.error_code or "failed" for f in failures)
            parts.append("failed: " + ", ".join(f"{n}x {code}" for code, n in codes.most_common()))
        answers = "; ".join(parts) or "no answers"
        return (
            f"no majority of {self.redundancy} after {launched} attempt(s) on distinct workers "
            f"({answers}); no other usable worker to ask{self._quarantine_note()}"
        )

    def _quarantine_note(self) -> str:
        held = [p for p in self.node.peers if getattr(p, "quarantine", "")]
        if not held:
            return ""
        names = ", ".join(p.name or p.peer_id[:8] for p in held[:3])
        return f" ({len(held)} quarantined: {names})"

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
        name = self.label_name(model, outcome)
        arr = outcome.outputs.get(name) if name else None
        try:
            got = int(np.asarray(arr).reshape(-1)[0]) if arr is not None and arr.size else None
        except (TypeError, ValueError, OverflowError):
            got = None
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
