"""Unit tests for the peer table and its liveness state machine, with an injected clock."""

from __future__ import annotations

import pytest

from netcore.net.peers import Peer, PeerState, PeerTable, Transition


class FakeClock:
    """A monotonic clock the test moves by hand (values exact in binary floating point)."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def table(clock: FakeClock) -> PeerTable:
    return PeerTable(evasive_after=3.0, expired_after=10.0, ping_interval=1.0, clock=clock)


def add(table: PeerTable, peer_id: str = "aa" * 10, **fields: object) -> Peer:
    peer, created = table.upsert(peer_id, "K" * 40, "mdns", **fields)
    assert created
    return peer


def make_worker(table: PeerTable, peer_id: str, **fields: object) -> Peer:
    peer = add(table, peer_id, caps=["infer"], **fields)
    peer.greeted = True
    return peer


# --- upsert ----------------------------------------------------------------------------------


def test_upsert_creates_then_updates(table: PeerTable, clock: FakeClock) -> None:
    peer, created = table.upsert("p1", "key1", "mdns", name="one", endpoints=["tcp://a:1"])
    assert created
    assert peer.peer_id == "p1" and peer.key == "key1" and peer.source == "mdns"
    assert peer.name == "one" and peer.endpoint == "tcp://a:1"
    assert peer.first_seen == peer.last_seen == clock.now
    assert peer.state is PeerState.ALIVE
    assert "p1" in table and len(table) == 1 and table.get("p1") is peer

    clock.advance(2.0)
    again, created = table.upsert(
        "p1", "key1", "hello", name="renamed", capacity=None, caps=["infer"]
    )
    assert not created
    assert again is peer
    assert peer.name == "renamed"
    assert peer.caps == ["infer"]
    assert peer.capacity == 1, "a None field leaves the old value"
    assert peer.source == "mdns", "source says how we first learned of the peer"
    assert peer.first_seen == 100.0
    assert len(table) == 1


def test_unknown_peer_lookups(table: PeerTable) -> None:
    assert table.get("nobody") is None
    assert "nobody" not in table
    assert table.heard("nobody") is None
    assert table.remove("nobody") is None
    assert table.tick() == []
    assert table.due_for_ping() == []
    assert table.workers() == []


# --- liveness ----------------------------------------------------------------------------------


def test_alive_until_evasive_after(table: PeerTable, clock: FakeClock) -> None:
    peer = add(table)
    clock.advance(2.75)
    assert table.tick() == []
    assert peer.state is PeerState.ALIVE


def test_alive_to_evasive_to_alive(table: PeerTable, clock: FakeClock) -> None:
    peer = add(table)
    clock.advance(3.25)
    assert table.tick() == [Transition(peer, PeerState.EVASIVE)]
    assert peer.state is PeerState.EVASIVE
    # Reported once, not on every tick.
    clock.advance(1.0)
    assert table.tick() == []
    assert peer.state is PeerState.EVASIVE
    assert peer.peer_id in table

    assert table.heard(peer.peer_id) == Transition(peer, PeerState.ALIVE)
    assert peer.state is PeerState.ALIVE
    assert peer.last_seen == clock.now
    assert table.tick() == []
    # A second message from an alive peer is no transition.
    assert table.heard(peer.peer_id) is None


def test_evasive_then_expired_and_removed(table: PeerTable, clock: FakeClock) -> None:
    peer = add(table)
    clock.advance(5.0)
    assert [t.state for t in table.tick()] == [PeerState.EVASIVE]
    clock.advance(4.5)  # 9.5 s of silence
    assert table.tick() == []
    assert peer.peer_id in table
    clock.advance(1.0)  # 10.5 s
    assert table.tick() == [Transition(peer, PeerState.EXPIRED)]
    assert peer.state is PeerState.EXPIRED
    assert peer.peer_id not in table
    assert table.get(peer.peer_id) is None
    assert len(table) == 0
    clock.advance(100.0)
    assert table.tick() == [], "an expired peer is reported once"
    assert table.heard(peer.peer_id) is None, "hearing a dropped peer does not revive it"


def test_alive_peer_silent_past_expiry_expires_directly(table: PeerTable, clock: FakeClock) -> None:
    peer = add(table)
    clock.advance(60.0)
    assert table.tick() == [Transition(peer, PeerState.EXPIRED)]
    assert peer.peer_id not in table


def test_any_message_restarts_the_silence(table: PeerTable, clock: FakeClock) -> None:
    peer = add(table)
    for _ in range(20):  # 20 x 2.5 s = 50 s, heard every 2.5 s
        clock.advance(2.5)
        table.heard(peer.peer_id)
        assert table.tick() == []
    assert peer.state is PeerState.ALIVE
    assert peer.peer_id in table


def test_heard_does_not_save_a_peer_silent_past_expiry_once_ticked(
    table: PeerTable, clock: FakeClock
) -> None:
    peer = add(table)
    clock.advance(11.0)
    table.tick()
    assert peer.peer_id not in table
    # A new message means a new peer entry (the node re-adds it from hello or mDNS).
    _, created = table.upsert(peer.peer_id, peer.key, "hello")
    assert created


def test_peers_are_independent(table: PeerTable, clock: FakeClock) -> None:
    old = add(table, "old")
    clock.advance(2.0)
    young = add(table, "young")
    clock.advance(1.5)  # old silent 3.5 s, young 1.5 s
    assert table.tick() == [Transition(old, PeerState.EVASIVE)]
    assert young.state is PeerState.ALIVE
    clock.advance(7.0)  # old 10.5 s, young 8.5 s
    assert table.tick() == [
        Transition(old, PeerState.EXPIRED),
        Transition(young, PeerState.EVASIVE),
    ]
    assert list(table) == [young]


def test_settings_are_used() -> None:
    clock = FakeClock()
    table = PeerTable(evasive_after=0.5, expired_after=1.0, ping_interval=0.25, clock=clock)
    peer = add(table)
    clock.advance(0.75)
    assert table.tick() == [Transition(peer, PeerState.EVASIVE)]
    clock.advance(0.5)
    assert table.tick() == [Transition(peer, PeerState.EXPIRED)]


def test_remove_drops_at_once(table: PeerTable) -> None:
    peer = add(table)
    assert table.remove(peer.peer_id) is peer
    assert peer.state is PeerState.EXPIRED
    assert peer.peer_id not in table
    assert table.tick() == []


def test_iterating_while_removing_is_safe(table: PeerTable) -> None:
    for i in range(5):
        add(table, f"p{i}")
    for peer in table:
        table.remove(peer.peer_id)
    assert len(table) == 0


# --- pings ---------------------------------------------------------------------------------------


def test_due_for_ping_after_ping_interval_of_silence(table: PeerTable, clock: FakeClock) -> None:
    peer = add(table)
    assert table.due_for_ping() == []
    clock.advance(0.5)
    assert table.due_for_ping() == []
    clock.advance(0.5)  # silent 1.0 s
    assert table.due_for_ping() == [peer]
    assert peer.last_ping == clock.now
    # Not again on the next ticks: only once per ping_interval.
    assert table.due_for_ping() == []
    clock.advance(0.5)
    assert table.due_for_ping() == []
    clock.advance(0.5)
    assert table.due_for_ping() == [peer]


def test_no_ping_for_a_peer_heard_recently(table: PeerTable, clock: FakeClock) -> None:
    peer = add(table)
    clock.advance(1.5)
    assert table.due_for_ping() == [peer]
    clock.advance(0.25)
    table.heard(peer.peer_id)  # the pong
    clock.advance(1.0)  # last ping 1.25 s ago, but heard only 1.0 s ago
    assert table.due_for_ping() == [peer]
    clock.advance(0.25)
    table.heard(peer.peer_id)
    clock.advance(0.75)  # heard 0.75 s ago
    assert table.due_for_ping() == []


def test_silent_peer_is_pinged_once_per_interval_not_every_tick(
    table: PeerTable, clock: FakeClock
) -> None:
    peer = add(table)
    pings = 0
    for _ in range(32):  # 8 s of silence in ticks of 0.25 s
        clock.advance(0.25)
        due = table.due_for_ping()
        assert due in ([], [peer])
        pings += len(due)
    assert pings == 8


def test_ping_interval_setting() -> None:
    clock = FakeClock()
    table = PeerTable(evasive_after=30.0, expired_after=60.0, ping_interval=4.0, clock=clock)
    peer = add(table)
    pings = 0
    for _ in range(40):  # 20 s in ticks of 0.5 s
        clock.advance(0.5)
        pings += len(table.due_for_ping())
    assert pings == 5
    assert peer.last_ping == clock.now


def test_ping_only_the_silent_peers(table: PeerTable, clock: FakeClock) -> None:
    quiet = add(table, "quiet")
    chatty = add(table, "chatty")
    clock.advance(1.0)
    table.heard(chatty.peer_id)
    assert table.due_for_ping() == [quiet]


def test_ping_works_with_a_clock_starting_at_zero() -> None:
    clock = FakeClock(start=0.0)
    table = PeerTable(clock=clock)
    peer = add(table)
    clock.advance(0.5)
    assert table.due_for_ping() == []
    clock.advance(0.5)
    assert table.due_for_ping() == [peer]


# --- workers -----------------------------------------------------------------------------------


def test_workers_are_greeted_alive_peers_with_the_cap(table: PeerTable, clock: FakeClock) -> None:
    good = make_worker(table, "good")
    not_greeted = add(table, "not-greeted", caps=["infer"])
    client_only = add(table, "client-only", caps=[])
    client_only.greeted = True
    other_kind = add(table, "other", caps=["embed"])
    other_kind.greeted = True
    assert table.workers() == [good]
    assert table.workers("infer") == [good]
    assert table.workers("embed") == [other_kind]
    assert not_greeted not in table.workers()

    not_greeted.greeted = True
    assert {p.peer_id for p in table.workers()} == {"good", "not-greeted"}


def test_evasive_and_expired_peers_are_not_workers(table: PeerTable, clock: FakeClock) -> None:
    a = make_worker(table, "a")
    b = make_worker(table, "b")
    clock.advance(2.0)
    table.heard("b")
    clock.advance(1.5)  # a silent 3.5 s, b 1.5 s
    table.tick()
    assert a.state is PeerState.EVASIVE
    assert table.workers() == [b]
    table.heard("a")
    assert {p.peer_id for p in table.workers()} == {"a", "b"}
    clock.advance(10.5)
    table.heard("b")
    table.tick()
    assert table.workers() == [b]
    table.remove("b")
    assert table.workers() == []


# --- Peer helpers ---------------------------------------------------------------------------------


def test_peer_has_model() -> None:
    peer = Peer("p", "k", models=[{"name": "digits", "sha256": "ab" * 32}])
    assert peer.has_model("digits")
    assert peer.has_model("digits", "ab" * 32)
    assert not peer.has_model("digits", "cd" * 32)
    assert not peer.has_model("other")


def test_peer_rtt_is_smoothed() -> None:
    peer = Peer("p", "k")
    assert peer.rtt is None
    peer.observe_rtt(0.010)
    assert peer.rtt == pytest.approx(0.010)
    peer.observe_rtt(0.020)
    assert peer.rtt == pytest.approx(0.8 * 0.010 + 0.2 * 0.020)


def test_peer_success_rate_and_endpoint() -> None:
    peer = Peer("p", "k")
    assert peer.success_rate is None
    assert peer.endpoint == ""
    peer.tasks_ok, peer.tasks_failed = 3, 1
    assert peer.success_rate == pytest.approx(0.75)
    peer.endpoints = ["tcp://10.0.0.1:1", "tcp://10.0.0.2:1"]
    assert peer.endpoint == "tcp://10.0.0.1:1"


def test_due_for_ping_on_a_beat_takes_only_its_side_and_a_little_slack(
    table: PeerTable, clock: FakeClock
) -> None:
    low, high = add(table, "a" * 20), add(table, "f" * 20)
    clock.advance(0.95)  # heard 0.95 s ago: due on a beat with 0.1 s of slack, not without
    assert table.due_for_ping() == []
    assert table.due_for_ping(only=lambda p: p.peer_id > "c" * 20, slack=0.1) == [high]
    assert table.due_for_ping(only=lambda p: p.peer_id < "c" * 20, slack=0.1) == [low]
    assert table.due_for_ping(slack=0.1) == []  # both pinged just now
