"""Bounded dialling, the pure logic (netcore.net.dialer) with a fake clock."""

from __future__ import annotations

from netcore.net.dialer import MDNS, RECALL, STATIC, Dialer

KEY = "k" * 40
EP = "tcp://127.0.0.1:9"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(**kw: float) -> tuple[Dialer, Clock]:
    clock = Clock()
    return Dialer(clock=clock, **kw), clock  # type: ignore[arg-type]


def test_first_dial_is_immediate_then_backs_off_and_bans_after_failed_handshakes() -> None:
    d, clock = make(first_backoff=1.0, max_backoff=8.0, max_failures=3)
    assert d.propose("p", KEY, EP, "p")
    dial_times = []
    for _ in range(40):
        due = [c.peer_id for c in d.due()] if "p" in d else []
        if "p" in due or not dial_times:
            dial_times.append(clock.now)
            d.dialled("p")
            if d.failed("p"):
                break
        clock.now += 0.25
    assert [t - dial_times[0] for t in dial_times] == [0.0, 1.0, 3.0]  # backoff 1 s, then 2 s
    assert "p" not in d and d.is_banned("p", EP)
    assert not d.propose("p", KEY, EP, "p")  # named again: ignored while banned
    clock.now += d.ban_s + 1
    assert not d.is_banned("p", EP)


def test_a_completed_handshake_resets_the_backoff_and_the_failures() -> None:
    d, clock = make(first_backoff=1.0, max_failures=3)
    d.propose("p", KEY, EP, "p")
    d.dialled("p")
    d.failed("p")
    clock.now += 1
    d.dialled("p")
    d.verified_link("p")
    cand = d.get("p")
    assert cand is not None and cand.verified and cand.backoff == 1.0
    assert ("p", EP) not in d.failures


def test_backoff_is_capped() -> None:
    d, clock = make(first_backoff=1.0, max_backoff=4.0, max_failures=100)
    d.propose("p", KEY, EP, "p")
    for _ in range(6):
        d.dialled("p")
        d.failed("p")
        clock.now += 100
    cand = d.get("p")
    assert cand is not None and cand.backoff == 4.0


def test_unverified_dials_are_bounded_and_static_ones_not_counted() -> None:
    d, _ = make(max_unverified=2)
    for name in ("a", "b"):
        assert d.propose(name, KEY, EP + name, name)
        d.dialled(name)
    assert not d.propose("c", KEY, EP + "c", "c")  # over the bound: waits
    assert d.propose("s", KEY, EP + "s", STATIC)  # given by hand: not bounded
    d.dialled("s")
    d.verified_link("a")
    assert [c.peer_id for c in d.due()] == ["c"]  # room again


def test_dials_that_never_complete_time_out() -> None:
    d, clock = make(dial_timeout=5.0)
    d.propose("p", KEY, EP, "p")
    d.dialled("p")
    d.propose("s", KEY, EP, STATIC)
    d.dialled("s")
    clock.now += 6
    assert d.timed_out() == ["p"]


def test_static_candidates_are_never_banned() -> None:
    d, _ = make(max_failures=1)
    d.propose("s", KEY, EP, STATIC)
    d.dialled("s")
    assert not d.failed("s")
    assert "s" in d and not d.is_banned("s", EP)


def test_a_refused_key_backs_off_but_is_never_banned() -> None:
    d, _ = make(max_failures=1)
    d.propose("p", KEY, EP, "p")
    d.dialled("p")
    assert not d.failed("p", refused=True)
    assert "p" in d and not d.is_banned("p", EP)


def test_only_the_peer_itself_re_points_a_working_link() -> None:
    d, clock = make()
    d.propose("p", KEY, EP, MDNS)
    d.dialled("p")
    d.verified_link("p")
    clock.now += 10
    assert not d.propose("p", KEY, "tcp://127.0.0.1:10", "sharer")
    cand = d.get("p")
    assert cand is not None and cand.endpoint == EP
    assert d.propose("p", KEY, "tcp://127.0.0.1:10", "p")


def test_a_candidate_lives_only_while_vouched_for() -> None:
    d, _ = make()
    d.propose("x", KEY, EP, "sharer")
    d.propose("y", KEY, EP + "1", "sharer")
    d.propose("y", KEY, EP + "1", MDNS)
    assert d.withdraw("sharer") == ["x"]  # y still has its mDNS record
    assert d.unvouch("y", MDNS)
    d.propose("z", KEY, EP + "2", "z")
    d.dialled("z")
    d.verified_link("z")
    d.get("z").vouchers.add(RECALL)  # type: ignore[union-attr]
    assert d.withdraw("z") == []  # expired with a working link: the recall vouches
