"""Vote counting for verified results (:mod:`netcore.tasks.verify`).

Results are compared by ``digest`` (bit-identical outputs) or by the model's ``label_output``
(the class label, for float outputs that differ between hardware). :class:`VoteKeys` turns one
result into the key it votes with; :func:`no_majority_reason` says why a vote failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netcore.tasks.scheduler import TaskOutcome

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
    hosts: int = 0
    """Distinct hosts among the voters (netcore.tasks.voters)."""


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
    """Known-answer checks (held-out labelled samples) sent, passed, failed."""
    spot_passed: int = 0
    spot_failed: int = 0
    checked: int = 0
    """Blind checks made: real task inputs re-run by the requester or another host."""
    mismatches: int = 0
    quarantined: int = 0
    """Workers a blind check proved wrong (and quarantined)."""
    votes_restored: int = 0
    """Lost votes given back: the majority that won them failed its blind check."""
    reissued: int = 0
    """Results of a convicted worker that were not final yet, run again elsewhere."""
    trials: int = 0
    """Probation trials sent (a task's input to a worker on probation, then checked)."""
    hosts_voted: int = 0
    """Distinct hosts whose results were counted in votes."""
    waiting: int = 0
    """Tasks waiting for voters now."""
    waited: int = 0
    """Tasks that had to wait for voters."""

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class VoteKeys:
    """What a result votes with, by ``digest`` or by ``label``, for the tasks of one node."""

    def __init__(self, node: Any, vote: str) -> None:
        self.node = node
        self.vote = vote
        self._labels: dict[str, str | None] = {}

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

    def key(self, model: str, outcome: TaskOutcome) -> bytes:
        if self.vote == "digest":
            return b"D" + outcome.digest
        name = self.label_name(model, outcome)
        arr = outcome.outputs.get(name) if name else None
        if arr is None:
            return b"missing-label"
        arr = np.ascontiguousarray(arr)
        return b"L" + f"{arr.dtype.str}{arr.shape}".encode() + arr.tobytes()

    def describe(self, model: str, outcome: TaskOutcome) -> str:
        name = self.label_name(model, outcome)
        arr = outcome.outputs.get(name) if name else None
        if arr is not None and arr.size:
            shown = ",".join(str(v) for v in np.asarray(arr).reshape(-1)[:3].tolist())
            return f"label {shown}"
        return f"digest {outcome.digest.hex()[:8]}"


def quarantine_note(peers: Iterable[Any]) -> str:
    """`` (N quarantined: a, b, c)`` for the peers held in quarantine, else nothing."""
    held = [p for p in peers if getattr(p, "quarantine", "")]
    if not held:
        return ""
    names = ", ".join(p.name or p.peer_id[:8] for p in held[:3])
    return f" ({len(held)} quarantined: {names})"


def no_majority_reason(
    redundancy: int,
    groups: dict[bytes, list[TaskOutcome]],
    failures: list[TaskOutcome],
    launched: int,
    describe: Callable[[TaskOutcome], str],
    note: str,
) -> str:
    """Why a vote found no majority: the answers by size of their group, then the failures."""
    parts = []
    for members in sorted(groups.values(), key=len, reverse=True):
        workers = ", ".join((m.worker or "?")[:8] for m in members[:3])
        parts.append(f"{len(members)}x {describe(members[0])} ({workers})")
    if failures:
        codes = Counter(f.error_code or "failed" for f in failures)
        parts.append("failed: " + ", ".join(f"{n}x {code}" for code, n in codes.most_common()))
    answers = "; ".join(parts) or "no answers"
    return (
        f"no majority of {redundancy} after {launched} attempt(s) on distinct workers "
        f"({answers}); no other usable worker to ask{note}"
    )
