"""The score of a peer's evidence and the reason for a quarantine. Pure functions; the
policy's numbers are documented in docs/trust.md (see :mod:`netcore.trust.reputation` for
how evidence is gathered, weighed by age and kept)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

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
    cooldown_s: float = 600.0
    """A first quarantine's length; each further offence doubles it."""
    max_cooldown_s: float = 30 * 86400.0
    half_life_s: float = 86400.0
    """Age at which an observation weighs half (``math.inf``: never decays)."""
    probation_checks: int = 3
    """Blind checks (``spot_passed``) a new or released peer passes to leave probation."""

    def cooldown(self, offence: int) -> float:
        """How long the ``offence``-th quarantine (1 = the first) lasts."""
        return min(self.max_cooldown_s, self.cooldown_s * 2 ** max(0, min(offence - 1, 60)))

    @property
    def bad(self) -> tuple[str, ...]:
        """The counters a served quarantine wipes from the evidence."""
        return (*self.lies, *self.failed)


DEFAULT_POLICY = Policy()


@dataclass(slots=True)
class Stats:
    """Counters of one peer."""

    counts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FIELDS, 0))
    """Whole numbers for totals; weighed by age for evidence."""
    uptime_s: float = 0.0

    def get(self, name: str) -> float:
        return self.counts.get(name, 0)

    def add(self, name: str, n: float = 1) -> None:
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


def verdict(
    stats: Stats, policy: Policy = DEFAULT_POLICY, totals: Stats | None = None
) -> tuple[float, str]:
    """The score of ``stats`` and its quarantine reason (``""``: usable), in one pass; the
    reason quotes ``totals`` (the whole numbers the weighed ``stats`` come from) if given."""
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
    stats = totals or stats
    n = round(stats.get(worst))
    votes = round(stats.get("votes_won") + stats.get("votes_lost"))
    spots = round(stats.get("spot_passed") + stats.get("spot_failed"))
    attempts = round(
        stats.get("tasks_ok") + stats.get("failures") + stats.get("timeouts") + stats.get("corrupt")
    )
    text = {
        "votes_lost": f"lost {n} of {votes} votes (results that disagree with the majority)",
        "spot_failed": f"failed {n} of {spots} spot checks (wrong answers to known samples)",
        "corrupt": f"sent {n} corrupt results (digest does not match the outputs)",
        "timeouts": f"timed out on {n} of {attempts} tasks",
        "failures": f"failed {n} of {attempts} tasks",
    }.get(worst, f"{worst}: {n}")
    return value, f"score {value:.2f}: {text}"


def decay(since: float, now: float, half_life: float) -> float:
    """What evidence from ``since`` weighs at ``now``."""
    if half_life <= 0 or half_life == math.inf:
        return 1.0
    return float(0.5 ** (max(0.0, now - since) / half_life))
