"""Vote counting for verified results (:mod:`netcore.tasks.verify`).

Results are compared by ``digest`` (bit-identical outputs), by the model's ``label_output``
(the class label, for float outputs that differ between hardware), or by ``cosine`` (every
float output row within cosine :data:`COSINE_SAME` of the other's, other outputs exactly: an
embedding computed on two machines differs in its last bits). :class:`VoteKeys` turns one
result into the key it votes with and says whether two keys agree (:meth:`VoteKeys.same`;
equality, except for cosine keys); :func:`no_majority_reason` says why a vote failed.
A model's kind (netcore.models.kinds) names the mode that fits it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from netcore.tasks.scheduler import TaskOutcome

VOTE_MODES = ("digest", "label", "cosine")
MAX_REDUNDANCY = 9
COSINE_SAME = 0.999
"""Two float rows agree when their cosine is at least this (both all zeros agree too)."""


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
        if self.vote == "cosine":
            return cosine_key(outcome.outputs)
        name = self.label_name(model, outcome)
        arr = outcome.outputs.get(name) if name else None
        if arr is None:
            return b"missing-label"
        arr = np.ascontiguousarray(arr)
        return b"L" + f"{arr.dtype.str}{arr.shape}".encode() + arr.tobytes()

    def same(self, a: bytes, b: bytes) -> bool:
        """Whether two results' keys agree: equal keys, or cosine keys whose float rows are
        within :data:`COSINE_SAME`."""
        if a == b:
            return True
        if a[:1] == b"C" and b[:1] == b"C":
            return cosine_agree(a, b)
        return False

    def group(self, groups: Iterable[bytes], key: bytes) -> bytes:
        """The key of the group ``key`` joins: the first that agrees with it, else itself
        (cosine agreement is not transitive; a group is judged by its first member)."""
        if key[:1] != b"C":
            return key
        return next((k for k in groups if self.same(k, key)), key)

    def describe(self, model: str, outcome: TaskOutcome) -> str:
        if self.vote == "cosine":
            return f"vector {outcome.digest.hex()[:8]}"
        name = self.label_name(model, outcome)
        arr = outcome.outputs.get(name) if name else None
        if arr is not None and arr.size:
            shown = ",".join(str(v) for v in np.asarray(arr).reshape(-1)[:3].tolist())
            return f"label {shown}"
        return f"digest {outcome.digest.hex()[:8]}"


def cosine_key(outputs: Any) -> bytes:
    """A result as a cosine vote key: each output (by name) with dtype, shape and bytes."""
    packed = []
    for name in sorted(outputs):
        arr = np.ascontiguousarray(outputs[name])
        packed.append([name, arr.dtype.str, list(arr.shape), arr.tobytes()])
    return b"C" + msgpack.packb(packed, use_bin_type=True)


def _unpack(key: bytes) -> dict[str, np.ndarray]:
    arrays = {}
    for name, dtype, shape, data in msgpack.unpackb(key[1:], raw=False):
        arrays[name] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)
    return arrays


def rows_agree(x: np.ndarray, y: np.ndarray) -> bool:
    """Float arrays with the same shape, row by row (first axis) within COSINE_SAME."""
    if x.shape != y.shape:
        return False
    if x.size == 0:
        return True
    a = x.reshape(x.shape[0], -1).astype(np.float64) if x.ndim else x.reshape(1, 1)
    b = y.reshape(y.shape[0], -1).astype(np.float64) if y.ndim else y.reshape(1, 1)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(a * b, axis=1) / (na * nb)
    return bool(np.all(both_zero | (cos >= COSINE_SAME)))


def cosine_agree(a: bytes, b: bytes) -> bool:
    """Two cosine keys agree: the same outputs, floats by cosine per row, the rest exactly."""
    try:
        x, y = _unpack(a), _unpack(b)
    except (ValueError, TypeError, msgpack.UnpackException):
        return False
    if set(x) != set(y):
        return False
    for name, left in x.items():
        right = y[name]
        if left.dtype != right.dtype:
            return False
        if left.dtype.kind == "f":
            if not rows_agree(left, right):
                return False
        elif left.shape != right.shape or not np.array_equal(left, right):
            return False
    return True


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
