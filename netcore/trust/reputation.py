"""Peer reputation: counters per peer key, a score from them, and quarantine. Pure logic.

What a requester observes of a worker (:data:`FIELDS`): tasks done, failures, timeouts,
corrupt results (a digest that does not match the outputs), votes won and lost in redundant
execution, spot checks passed and failed, and the time it was seen alive.

Two questions, each a smoothed ratio of good to bad evidence::

    ratio = (good + PRIOR_GOOD) / (good + bad + PRIOR_GOOD + PRIOR_BAD)

* **honesty**: votes won and spot checks passed against votes lost, spot checks failed and
  corrupt results (weighed by how surely each is a lie). Tasks merely *done* say nothing
  here: a liar does its tasks too, so they never make up for lies.
* **reliability**: tasks done (and uptime) against failures and timeouts.

The score is the lower of the two; a new peer scores ``PRIOR_GOOD / (PRIOR_GOOD + PRIOR_BAD)``
= 0.8. A peer is quarantined when either ratio falls under ``threshold`` with at least
``min_bad`` weight of that kind of bad evidence (so one unlucky timeout, or one disagreement,
never quarantines anyone; a worker that fails more often than it succeeds, or lies twice,
is). The scheduler multiplies a worker's cost by :func:`cost_factor` and never uses a
quarantined one.

The counters persist in the store; :class:`Reputation` keeps them in memory with the
deltas not yet written, and takes fresh totals from the store after each write (several
processes may share one store).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

FIELDS: tuple[str, ...] = (
    "tasks_ok",
    "failures",
    "timeouts",
    "corrupt",
    "votes_won",
    "votes_lost",
    "spot_passed",
    "spot_failed",
)


UPTIME_JUDGE_S = 60.0
"""Uptime accumulated before a score is recomputed for it (other evidence: at once or within
a second)."""


@dataclass(frozen=True, slots=True)
class Policy:
    """Weights and thresholds; the defaults are documented in docs/trust.md."""

    truth: Mapping[str, float] = field(
        default_factory=lambda: {"votes_won": 1.0, "spot_passed": 3.0}
    )
    lies: Mapping[str, float] = field(
        default_factory=lambda: {"votes_lost": 5.0, "spot_failed": 8.0, "corrupt": 5.0}
    )
    done: Mapping[str, float] = field(default_factory=lambda: {"tasks_ok": 1.0})
    failed: Mapping[str, float] = field(default_factory=lambda: {"failures": 1.0, "timeouts": 1.0})
    uptime_per_hour: float = 0.5
    """Reliability evidence per hour a peer was seen alive..."""
    uptime_cap: float = 12.0
    """...up to this much (a day)."""
    prior_good: float = 4.0
    prior_bad: float = 1.0
    threshold: float = 0.5
    """A ratio under this quarantines (with enough bad evidence of its kind)."""
    min_bad: float = 10.0
    """Bad evidence of one kind needed before a peer can be quarantined for it."""


DEFAULT_POLICY = Policy()


@dataclass(slots=True)
class Stats:
    """Counters of one peer."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIELDS, 0))
    uptime_s: float = 0.0

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)

    def add(self, name: str, n: int = 1) -> None:
        if name not in FIELDS:
            raise KeyError(f"unknown reputation counter {name!r}")
        self.counts[name] = self.counts.get(name, 0) + n

    def empty(self) -> bool:
        return not any(self.counts.values()) and self.uptime_s == 0


def _sum(stats: Stats, weights: Mapping[str, float]) -> float:
    return sum(stats.get(k) * w for k, w in weights.items())


def evidence(stats: Stats, policy: Policy = DEFAULT_POLICY) -> dict[str, float]:
    """The four weighed sums: ``truth``, ``lies``, ``done`` (with uptime) and ``failed``."""
    done = _sum(stats, policy.done)
    done += min(policy.uptime_cap, stats.uptime_s / 3600 * policy.uptime_per_hour)
    return {
        "truth": _sum(stats, policy.truth),
        "lies": _sum(stats, policy.lies),
        "done": done,
        "failed": _sum(stats, policy.failed),
    }


def _ratio(good: float, bad: float, policy: Policy) -> float:
    return (good + policy.prior_good) / (good + bad + policy.prior_good + policy.prior_bad)


def score(stats: Stats, policy: Policy = DEFAULT_POLICY) -> float:
    """0 < score < 1: the lower of honesty and reliability."""
    return verdict(stats, policy)[0]


def cost_factor(value: float) -> float:
    """What the scheduler multiplies a worker's cost by: 1.25 for a new peer, ~1 for a
    reliable one, more the lower its score."""
    return 1.0 / max(value, 0.05)


def quarantine_reason(stats: Stats, policy: Policy = DEFAULT_POLICY) -> str:
    """Why ``stats`` put a peer in quarantine, or ``""`` when it is usable."""
    return verdict(stats, policy)[1]


def verdict(stats: Stats, policy: Policy = DEFAULT_POLICY) -> tuple[float, str]:
    """The score of ``stats`` and its quarantine reason (``""``: usable), in one pass."""
    ev = evidence(stats, policy)
    honesty = _ratio(ev["truth"], ev["lies"], policy)
    reliability = _ratio(ev["done"], ev["failed"], policy)
    value = min(honesty, reliability)
    if ev["lies"] >= policy.min_bad and honesty < policy.threshold:
        kinds = policy.lies
    elif ev["failed"] >= policy.min_bad and reliability < policy.threshold:
        kinds = policy.failed
    else:
        return value, ""
    # Name the kind of evidence that weighs most.
    worst = max(kinds, key=lambda k: stats.get(k) * kinds[k])
    n = stats.get(worst)
    votes = stats.get("votes_won") + stats.get("votes_lost")
    spots = stats.get("spot_passed") + stats.get("spot_failed")
    attempts = stats.get("tasks_ok") + stats.get("failures") + stats.get("timeouts")
    attempts += stats.get("corrupt")
    text = {
        "votes_lost": f"lost {n} of {votes} votes (results that disagree with the majority)",
        "spot_failed": f"failed {n} of {spots} spot checks (wrong answers to known samples)",
        "corrupt": f"sent {n} corrupt results (digest does not match the outputs)",
        "timeouts": f"timed out on {n} of {attempts} tasks",
        "failures": f"failed {n} of {attempts} tasks",
    }.get(worst, f"{worst}: {n}")
    return value, f"score {value:.2f}: {text}"


# --- the book of records ---------------------------------------------------------------------


@dataclass(slots=True)
class Record:
    key: str
    peer_id: str
    name: str = ""
    stored: Stats = field(default_factory=Stats)
    """Totals as last read from the store."""
    pending: Stats = field(default_factory=Stats)
    """Observed here since the last write."""
    first_seen: float = 0.0
    last_seen: float = 0.0
    quarantined: str = ""
    """Reason, or "" when usable."""
    quarantined_at: float | None = None
    score: float = 0.8
    """The score of :attr:`stats`, kept current by :class:`Reputation` (the scheduler reads
    it for every candidate of every choice)."""
    stats: Stats = field(default_factory=Stats)
    """``stored`` + ``pending``: every observation."""
    stale: bool = False
    """Good evidence came since :attr:`score` was computed (see :meth:`Reputation.refresh`)."""
    unjudged_uptime_s: float = 0.0
    """Uptime added since the score was computed; it goes stale past UPTIME_JUDGE_S."""


@dataclass(frozen=True, slots=True)
class Change:
    """A peer entered (``reason`` set) or left (``reason`` "") quarantine."""

    record: Record
    reason: str


class Reputation:
    """Records by peer key; :meth:`note` returns a :class:`Change` when quarantine flips."""

    def __init__(
        self, policy: Policy = DEFAULT_POLICY, clock: Callable[[], float] = time.time
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.records: dict[str, Record] = {}

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> Record | None:
        return self.records.get(key)

    def score(self, key: str) -> float:
        record = self.records.get(key)
        return record.score if record is not None else self.prior

    @property
    def prior(self) -> float:
        """The score of a peer we know nothing of."""
        p = self.policy
        return p.prior_good / (p.prior_good + p.prior_bad)

    def quarantined(self, key: str) -> str:
        record = self.records.get(key)
        return record.quarantined if record else ""

    def _record(self, key: str, peer_id: str, name: str) -> Record:
        record = self.records.get(key)
        now = self.clock()
        if record is None:
            record = Record(key, peer_id, name, first_seen=now, last_seen=now, score=self.prior)
            self.records[key] = record
        if name:
            record.name = name
        record.last_seen = now
        return record

    def note(self, key: str, peer_id: str, name: str, counter: str, n: int = 1) -> Change | None:
        """Count an observation. Bad evidence is judged at once (a quarantine must not wait);
        good evidence, the bulk of it, only marks the score stale for :meth:`refresh`."""
        record = self._record(key, peer_id, name)
        record.pending.add(counter, n)
        record.stats.add(counter, n)
        if counter in self.policy.truth or counter in self.policy.done:
            record.stale = True
            return None
        return self._judge(record)

    def add_uptime(self, key: str, peer_id: str, name: str, seconds: float) -> None:
        record = self._record(key, peer_id, name)
        seconds = max(0.0, seconds)
        record.pending.uptime_s += seconds
        record.stats.uptime_s += seconds
        # A second of uptime moves a score by ~1e-5: judging every peer each second for it
        # was a good part of an idle node's CPU at 50 peers.
        record.unjudged_uptime_s += seconds
        if record.unjudged_uptime_s >= UPTIME_JUDGE_S:
            record.stale = True

    def has_pending_counts(self) -> bool:
        """Any unsaved observation other than uptime (uptime alone waits longer, see
        netcore.trust.manager's UPTIME_FLUSH_S)."""
        return any(any(r.pending.counts.values()) for r in self.records.values())

    def refresh(self) -> list[Change]:
        """Recompute the scores that good evidence made stale (the node does it each second)."""
        changes = []
        for record in self.records.values():
            if record.stale:
                change = self._judge(record)
                if change is not None:
                    changes.append(change)
        return changes

    def _judge(self, record: Record) -> Change | None:
        record.stale = False
        record.unjudged_uptime_s = 0.0
        record.score, reason = verdict(record.stats, self.policy)
        if bool(reason) == bool(record.quarantined):
            record.quarantined = reason or ""  # keep the reason's numbers current
            return None
        record.quarantined = reason
        record.quarantined_at = self.clock() if reason else None
        return Change(record, reason)

    def take_pending(self) -> dict[str, Record]:
        """Records with unsaved observations (the caller writes them, then :meth:`load`s)."""
        return {k: r for k, r in self.records.items() if not r.pending.empty()}

    def load(self, rows: Iterable[StoredRow]) -> list[Change]:
        """Replace the stored totals with ``rows`` (pending observations are dropped: call
        after writing them). Records not in ``rows`` (reset elsewhere) are forgotten."""
        seen: set[str] = set()
        changes: list[Change] = []
        for row in rows:
            seen.add(row.key)
            record = self.records.get(row.key)
            if record is None:
                record = Record(
                    row.key, row.peer_id, row.name, first_seen=row.first_seen, score=self.prior
                )
                self.records[row.key] = record
            record.stored = Stats(
                {k: int(row.counts.get(k, 0)) for k in FIELDS}, float(row.uptime_s)
            )
            record.pending = Stats()
            record.stats = Stats(dict(record.stored.counts), record.stored.uptime_s)
            record.name = row.name or record.name
            record.first_seen = row.first_seen or record.first_seen
            record.last_seen = max(record.last_seen, row.last_seen)
            change = self._judge(record)
            if change is not None:
                changes.append(change)
            if record.quarantined and row.quarantined_at is not None:
                record.quarantined_at = row.quarantined_at
        for key in [k for k in self.records if k not in seen]:
            record = self.records.pop(key)
            if record.quarantined:
                changes.append(Change(record, ""))
        return changes


class StoredRow(Protocol):
    """What :meth:`Reputation.load` needs of a stored row (see
    :class:`netcore.trust.store.ReputationRow`)."""

    @property
    def key(self) -> str: ...
    @property
    def peer_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def counts(self) -> Mapping[str, int]: ...
    @property
    def uptime_s(self) -> float: ...
    @property
    def first_seen(self) -> float: ...
    @property
    def last_seen(self) -> float: ...
    @property
    def quarantined_at(self) -> float | None: ...
