"""Reputation is pure logic: scores, quarantine and its reasons, deltas and reloads."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from netcore.trust.reputation import (
    DEFAULT_POLICY,
    FIELDS,
    Policy,
    Reputation,
    Stats,
    cost_factor,
    quarantine_reason,
    score,
)


def stats(uptime_s: float = 0.0, **counts: int) -> Stats:
    out = Stats(uptime_s=uptime_s)
    for name, n in counts.items():
        out.add(name, n)
    return out


def test_a_new_peer_is_neutral() -> None:
    assert score(Stats()) == pytest.approx(0.8)
    assert cost_factor(score(Stats())) == pytest.approx(1.25)
    assert quarantine_reason(Stats()) == ""


def test_good_work_raises_the_score_and_lowers_the_cost() -> None:
    reliable = stats(tasks_ok=200, votes_won=50, spot_passed=10)
    assert score(reliable) > 0.98
    assert cost_factor(score(reliable)) < cost_factor(score(Stats()))
    assert cost_factor(0.0) == pytest.approx(20.0)  # bounded


def test_one_disagreement_never_quarantines() -> None:
    assert quarantine_reason(stats(tasks_ok=1, votes_lost=1)) == ""


def test_two_lost_votes_quarantine_with_a_reason() -> None:
    why = quarantine_reason(stats(tasks_ok=2, votes_lost=2))
    assert why.startswith("score 0.27: ")
    assert "lost 2 of 2 votes" in why


def test_tasks_done_never_make_up_for_lies() -> None:
    # A liar answers its tasks too: only votes won and spot checks passed count for honesty.
    busy_liar = stats(tasks_ok=500, spot_failed=2)
    assert "failed 2 of 2 spot checks" in quarantine_reason(busy_liar)
    assert quarantine_reason(stats(tasks_ok=500, spot_passed=10, spot_failed=2)) == ""


def test_a_worker_that_fails_more_than_it_succeeds_is_quarantined() -> None:
    assert quarantine_reason(stats(tasks_ok=60, timeouts=40)) == ""
    assert "timed out on 60 of 100 tasks" in quarantine_reason(stats(tasks_ok=40, timeouts=60))


def test_an_honest_worker_with_some_bad_luck_stays() -> None:
    lucky = stats(tasks_ok=100, timeouts=5, failures=3, votes_won=40, votes_lost=1)
    assert quarantine_reason(lucky) == ""
    assert score(lucky) > 0.85


@pytest.mark.parametrize(
    ("counts", "needed", "text"),
    [
        ({"timeouts": 1}, 10, "timed out on 10 of 10 tasks"),
        ({"failures": 1}, 10, "failed 10 of 10 tasks"),
        ({"spot_failed": 1}, 2, "failed 2 of 2 spot checks"),
        ({"corrupt": 1}, 2, "sent 2 corrupt results"),
    ],
)
def test_how_much_evidence_each_kind_needs(counts: dict[str, int], needed: int, text: str) -> None:
    kind = next(iter(counts))
    assert quarantine_reason(stats(**{kind: needed - 1})) == ""
    why = quarantine_reason(stats(**{kind: needed}))
    assert text in why


def test_uptime_is_worth_a_little_and_is_capped() -> None:
    base = stats(tasks_ok=5, timeouts=8)
    assert score(stats(uptime_s=3600, tasks_ok=5, timeouts=8)) > score(base)
    week = score(stats(uptime_s=7 * 86400, tasks_ok=5, timeouts=8))
    day = score(stats(uptime_s=86400, tasks_ok=5, timeouts=8))
    assert week == day  # capped at a day's worth
    assert DEFAULT_POLICY.uptime_cap == 12.0


def test_unknown_counters_are_refused() -> None:
    with pytest.raises(KeyError):
        Stats().add("bribes")


def test_note_reports_quarantine_once() -> None:
    now = [1000.0]
    book = Reputation(clock=lambda: now[0])
    assert book.note("K1", "p1", "one", "votes_lost") is None
    change = book.note("K1", "p1", "one", "votes_lost")
    assert change is not None and change.reason and change.record.peer_id == "p1"
    assert book.quarantined("K1") == change.reason
    assert book.get("K1").quarantined_at == 1000.0  # type: ignore[union-attr]
    assert book.note("K1", "p1", "one", "votes_lost") is None  # still in: no new change
    assert "lost 2 of 2" in book.quarantined("K1")  # why it began (reputation show says it)
    assert book.score("unknown") == pytest.approx(0.8)
    assert book.quarantined("unknown") == ""


@dataclass
class Row:
    key: str
    peer_id: str
    name: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    uptime_s: float = 0.0
    first_seen: float = 1.0
    last_seen: float = 2.0
    quarantined_at: float | None = None
    quarantine_reason: str = ""
    offences: int = 0
    quarantined_until: float | None = None
    probation_from: int = 0
    weights: dict[str, float] | None = None
    decayed_at: float = 0.0


def test_pending_deltas_and_reloads() -> None:
    book = Reputation(clock=lambda: 100.0)
    book.note("K1", "p1", "one", "tasks_ok", 3)
    book.add_uptime("K1", "p1", "one", 12.5)
    pending = book.take_pending()
    assert set(pending) == {"K1"}
    assert pending["K1"].pending.get("tasks_ok") == 3 and pending["K1"].pending.uptime_s == 12.5

    # The store now holds our 3 plus 2 from another process, and a second peer quarantined.
    changes = book.load(
        [
            Row("K1", "p1", "one", {"tasks_ok": 5}, 12.5),
            Row("K2", "p2", "two", {"votes_lost": 3}, quarantined_at=50.0),
        ]
    )
    assert book.get("K1").stats.get("tasks_ok") == 5  # type: ignore[union-attr]
    assert book.take_pending() == {}
    assert [(c.record.peer_id, bool(c.reason)) for c in changes] == [("p2", True)]
    assert book.get("K2").quarantined_at == 50.0  # type: ignore[union-attr]

    # Reset elsewhere: the row is gone, the quarantine lifts.
    changes = book.load([Row("K1", "p1", "one", {"tasks_ok": 5})])
    assert [(c.record.peer_id, c.reason) for c in changes] == [("p2", "")]
    assert book.get("K2") is None and len(book) == 1


def test_fields_match_the_store() -> None:
    from netcore.trust.store import REPUTATION_FIELDS

    assert FIELDS == REPUTATION_FIELDS


# --- issue 16: forgiving slowly ----------------------------------------------------------------


def lie_twice(book: Reputation, key: str = "K1") -> None:
    for _ in range(2):
        book.note(key, "p1", "one", "votes_lost")


def test_a_quarantine_ends_after_a_cool_down_that_doubles_with_each_offence() -> None:
    # Before issue 16 a quarantine never ended by itself.
    now = [1000.0]
    book = Reputation(Policy(cooldown_s=600.0), clock=lambda: now[0])
    lie_twice(book)
    record = book.get("K1")
    assert record is not None and record.quarantined and record.offences == 1
    assert record.quarantined_until == 1600.0
    now[0] = 1599.0
    assert book.refresh() == [] and book.quarantined("K1")
    now[0] = 1600.0
    (change,) = book.refresh()
    assert change.reason == "" and not book.quarantined("K1")
    assert book.on_probation("K1"), "back from quarantine: on probation again"
    assert book.score("K1") > 0.5, "the served offence's evidence is wiped"
    assert record.stats.get("votes_lost") == 2, "the lifetime totals keep it"
    lie_twice(book)  # again: twice as long
    assert record.offences == 2 and record.quarantined_until == 1600.0 + 1200.0
    now[0] = 2800.0
    book.refresh()
    lie_twice(book)
    assert record.offences == 3 and record.quarantined_until == 2800.0 + 2400.0


def test_probation_ends_after_three_blind_checks_since_it_began() -> None:
    now = [1000.0]
    book = Reputation(Policy(cooldown_s=10.0), clock=lambda: now[0])
    assert book.on_probation("new"), "an unknown identity is on probation"
    for _ in range(3):
        assert book.on_probation("K1")
        book.note("K1", "p1", "one", "spot_passed")
    assert not book.on_probation("K1")
    lie_twice(book)
    lie_twice(book)
    assert book.quarantined("K1") and book.on_probation("K1"), "quarantined"
    now[0] += 10.0
    book.refresh()
    assert book.on_probation("K1"), "checks passed before the offence do not count"
    for _ in range(3):
        book.note("K1", "p1", "one", "spot_passed")
    assert not book.on_probation("K1")


def test_evidence_decays_toward_neutral_with_the_half_life() -> None:
    now = [0.0]
    book = Reputation(Policy(half_life_s=3600.0, min_bad=1000.0), clock=lambda: now[0])
    for _ in range(3):
        book.note("K1", "p1", "one", "votes_lost")  # min_bad high: scored, never quarantined
    book.refresh()
    fresh = book.score("K1")
    record = book.get("K1")
    assert record is not None
    # Written and read back (what the store does), then ten half-lives pass.
    record.weights, record.pending_w, record.decayed_at = record.pending_w, Stats(), 0.0
    now[0] = 36000.0
    record.stale = True
    book.refresh()
    assert fresh < 0.5 < book.score("K1")
    assert book.score("K1") == pytest.approx(book.prior, abs=0.01)


def test_restored_votes_lift_the_quarantine_they_caused_and_the_offence() -> None:
    book = Reputation(clock=lambda: 1000.0)
    for _ in range(3):
        book.note("K1", "p1", "one", "votes_won")
    lie_twice(book)
    record = book.get("K1")
    assert record is not None and record.quarantined and record.offences == 1
    change = book.restore_votes("K1", "p1", "one", 2)
    assert change is not None and change.reason == ""
    assert not record.quarantined and record.offences == 0
    assert record.stats.get("votes_lost") == 0 and record.stats.get("votes_won") == 5
    assert record.unsaved == "pardon"
    assert book.restore_votes("K1", "p1", "one", 5) is None, "nothing left to give back"
    assert record.stats.get("votes_won") == 5
