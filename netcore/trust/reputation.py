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

**Forgiving slowly.** The score is computed from the evidence weighed by its age: each
observation counts ``0.5 ** (age / half_life_s)`` (a day by default), so with nothing new a
score drifts back toward the prior. A quarantine is not forever: it lasts ``cooldown_s`` (10
minutes by default) for a first offence and doubles with each further one (20, 40 minutes...,
at most ``max_cooldown_s``). When it ends, the bad evidence that caused it is wiped (the
sentence is served; the lifetime totals keep it, and the offence count stays) and the peer
is on probation again: :meth:`Reputation.on_probation` until it passes ``probation_checks``
more blind checks (``spot_passed``). A worker whose lost votes turn out to have been against
a majority later shown wrong gets them back (:meth:`Reputation.restore_votes`): moved to votes
won, and a quarantine they caused is lifted and its offence taken back.

The counters persist in the store; :class:`Reputation` keeps them in memory with the
deltas not yet written, and takes fresh totals from the store after each write (several
processes may share one store).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from netcore.trust.scoring import (
    DEFAULT_POLICY,
    FIELDS,
    Policy,
    Stats,
    cost_factor,
    decay,
    evidence,
    quarantine_reason,
    score,
    verdict,
)

__all__ = [
    "DEFAULT_POLICY", "FIELDS", "Change", "Policy", "Record", "Reputation", "Stats",
    "cost_factor", "decay", "describe_row", "evidence", "quarantine_reason", "score", "verdict",
]  # fmt: skip

UPTIME_JUDGE_S = 60.0
"""Uptime accumulated before a score is recomputed for it (other evidence: at once or within
a second)."""


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
    """Why its quarantine began, or "" when usable."""
    quarantined_at: float | None = None
    quarantined_until: float | None = None
    offences: int = 0
    """Quarantines so far: the next lasts twice as long as the last."""
    probation_from: float = 0
    """``spot_passed`` total when its current probation began."""
    score: float = 0.8
    """The score of its evidence, kept current by :class:`Reputation` (the scheduler reads
    it for every candidate of every choice)."""
    stats: Stats = field(default_factory=Stats)
    """``stored`` + ``pending``: every observation, whole."""
    weights: Stats = field(default_factory=Stats)
    """The evidence as last read from the store, weighed by age as of ``decayed_at``."""
    decayed_at: float = 0.0
    pending_w: Stats = field(default_factory=Stats)
    """Evidence observed here since the last write (may be negative: votes given back)."""
    unsaved: str = ""
    """A quarantine decision not yet written: "begin", "end" or "pardon"."""
    ended: float | None = None
    """The end of the quarantine an unsaved "end"/"pardon" closes."""
    stale: bool = False
    """Good evidence came since :attr:`score` was computed (see :meth:`Reputation.refresh`)."""
    unjudged_uptime_s: float = 0.0
    """Uptime added since the score was computed; it goes stale past UPTIME_JUDGE_S."""

    def evidence(self, now: float, half_life: float) -> Stats:
        """What the score is computed from: the stored evidence decayed to ``now``, plus the
        evidence observed since."""
        f = decay(self.decayed_at, now, half_life)
        counts = {k: self.weights.get(k) * f + self.pending_w.get(k) for k in FIELDS}
        return Stats(counts, self.weights.uptime_s * f + self.pending_w.uptime_s)


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

    def on_probation(self, key: str) -> bool:
        """New, quarantined, or back from quarantine without ``probation_checks`` blind
        checks passed since."""
        record = self.records.get(key)
        if record is None or record.quarantined:
            return True
        passed = record.stats.get("spot_passed") - record.probation_from
        return passed < self.policy.probation_checks

    def _record(self, key: str, peer_id: str, name: str) -> Record:
        record = self.records.get(key)
        now = self.clock()
        if record is None:
            record = Record(
                key, peer_id, name, first_seen=now, last_seen=now, score=self.prior, decayed_at=now
            )
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
        record.pending_w.add(counter, n)
        if counter in self.policy.truth or counter in self.policy.done:
            record.stale = True
            return None
        return self._judge(record)

    def restore_votes(self, key: str, peer_id: str, name: str, count: int = 1) -> Change | None:
        """``count`` votes this peer lost were against a majority later shown wrong: they
        become votes won. A quarantine its evidence no longer supports is lifted at once (a
        pardon: the offence is taken back too). Returns the change, if any."""
        record = self._record(key, peer_id, name)
        n = int(min(max(0, count), record.stats.get("votes_lost")))
        if n <= 0:
            return None
        for stats in (record.pending, record.stats):
            stats.add("votes_lost", -n)
            stats.add("votes_won", n)
        now = self.clock()
        weighed = record.evidence(now, self.policy.half_life_s).get("votes_lost")
        record.pending_w.add("votes_lost", -min(float(n), weighed))
        record.pending_w.add("votes_won", n)
        change = self._judge(record)
        if record.quarantined and not verdict(self._evidence(record), self.policy)[1]:
            return self._end(record, pardon=True)
        return change

    def add_uptime(self, key: str, peer_id: str, name: str, seconds: float) -> None:
        record = self._record(key, peer_id, name)
        seconds = max(0.0, seconds)
        record.pending.uptime_s += seconds
        record.stats.uptime_s += seconds
        record.pending_w.uptime_s += seconds
        # A second of uptime moves a score by ~1e-5: judging every peer each second for it
        # was a good part of an idle node's CPU at 50 peers.
        record.unjudged_uptime_s += seconds
        if record.unjudged_uptime_s >= UPTIME_JUDGE_S:
            record.stale = True

    def has_pending_counts(self) -> bool:
        """Any unsaved observation other than uptime (uptime alone waits longer, see
        netcore.trust.manager's UPTIME_FLUSH_S), or an unsaved quarantine decision."""
        return any(r.unsaved or any(r.pending.counts.values()) for r in self.records.values())

    def refresh(self) -> list[Change]:
        """Recompute the scores that good evidence made stale and end the quarantines whose
        time is up (the node does it each second)."""
        changes = []
        now = self.clock()
        for record in self.records.values():
            due = record.quarantined_until is not None and now >= record.quarantined_until
            if record.stale or (record.quarantined and due):
                change = self._judge(record)
                if change is not None:
                    changes.append(change)
        return changes

    def _evidence(self, record: Record) -> Stats:
        return record.evidence(self.clock(), self.policy.half_life_s)

    def _judge(self, record: Record) -> Change | None:
        record.stale = False
        record.unjudged_uptime_s = 0.0
        now = self.clock()
        record.score, reason = verdict(self._evidence(record), self.policy, record.stats)
        if record.quarantined:
            if record.quarantined_until is not None and now >= record.quarantined_until:
                return self._end(record, pardon=False)
            return None
        if not reason:
            return None
        record.offences += 1
        record.quarantined = reason
        record.quarantined_at = now
        record.quarantined_until = now + self.policy.cooldown(record.offences)
        record.unsaved = "begin"
        return Change(record, reason)

    def _end(self, record: Record, pardon: bool) -> Change:
        """The quarantine is over: served (its bad evidence wiped) or pardoned (its offence
        taken back); probation begins again."""
        record.ended = record.quarantined_until
        record.unsaved = "pardon" if pardon else "end"
        if pardon:
            record.offences = max(0, record.offences - 1)
        else:
            for k in self.policy.bad:
                record.weights.counts[k] = 0
                record.pending_w.counts[k] = 0
        record.quarantined = ""
        record.quarantined_at = record.quarantined_until = None
        record.probation_from = record.stats.get("spot_passed")
        record.score = verdict(self._evidence(record), self.policy)[0]
        return Change(record, "")

    def take_pending(self) -> dict[str, Record]:
        """Records with unsaved observations (the caller writes them, then :meth:`load`s)."""
        return {
            k: r
            for k, r in self.records.items()
            if not r.pending.empty() or not r.pending_w.empty()
        }

    def load(self, rows: Iterable[StoredRow]) -> list[Change]:
        """Replace the stored totals with ``rows`` (pending observations are dropped: call
        after writing them). Records not in ``rows`` (reset elsewhere) are forgotten. The
        quarantine state comes from the row, unless a decision here is not written yet."""
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
            was = record.quarantined
            record.stored = Stats(
                {k: int(row.counts.get(k, 0)) for k in FIELDS}, float(row.uptime_s)
            )
            record.pending = Stats()
            record.stats = Stats(dict(record.stored.counts), record.stored.uptime_s)
            weights = dict(row.weights) if row.weights is not None else {}
            record.weights = Stats(
                {k: float(weights.get(k, record.stored.get(k))) for k in FIELDS},
                float(weights.get("uptime_s", row.uptime_s)),
            )
            record.decayed_at = row.decayed_at or row.last_seen
            record.pending_w = Stats()
            record.name = row.name or record.name
            record.first_seen = row.first_seen or record.first_seen
            record.last_seen = max(record.last_seen, row.last_seen)
            if not record.unsaved:
                record.offences = row.offences
                record.probation_from = row.probation_from
                started = row.quarantined_at is not None or row.quarantined_until is not None
                record.quarantined = (row.quarantine_reason or "quarantined") if started else ""
                record.quarantined_at = row.quarantined_at
                record.quarantined_until = row.quarantined_until
                if started and row.quarantined_until is None:  # begun without an end (an
                    # older p2pai's): it gets one now, written back at the next flush
                    at = row.quarantined_at or self.clock()
                    record.offences = max(1, row.offences)
                    record.quarantined_until = at + self.policy.cooldown(record.offences)
                    record.unsaved = "begin"
            self._judge(record)
            if bool(was) != bool(record.quarantined):
                changes.append(Change(record, record.quarantined))
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
    @property
    def quarantine_reason(self) -> str: ...
    @property
    def offences(self) -> int: ...
    @property
    def quarantined_until(self) -> float | None: ...
    @property
    def probation_from(self) -> int: ...
    @property
    def weights(self) -> Mapping[str, float] | None: ...
    @property
    def decayed_at(self) -> float: ...


def describe_row(
    row: StoredRow, policy: Policy = DEFAULT_POLICY, now: float | None = None
) -> dict[str, object]:
    """What ``reputation show`` says of a stored row: score, state, why and until when."""
    now = time.time() if now is None else now
    rep = Reputation(policy, clock=lambda: now)
    rep.load([row])
    record = rep.records[row.key]
    if record.quarantined:
        state = "quarantined"
    elif rep.on_probation(row.key):
        state = "probation"
    else:
        state = "ok"
    return {
        "score": round(record.score, 3),
        "state": state,
        "reason": record.quarantined,
        "quarantined_at": record.quarantined_at,
        "quarantined_until": record.quarantined_until,
        "offences": record.offences,
    }
