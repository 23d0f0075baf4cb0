"""The trust manager without sockets: policy, gate, quarantine and persistence, revocation,
self-hellos (clones), and the connection guard's bookkeeping."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import zmq

from netcore.config.settings import Config
from netcore.net.clones import CloneDetector, clone_message
from netcore.net.guard import ConnectionGuard
from netcore.net.identity import load_or_create
from netcore.net.peers import PeerTable
from netcore.observe.events import Event, NodeError, PeerQuarantine
from netcore.trust.keys import TrustError, TrustList, trust_path
from netcore.trust.manager import FLUSH_EVERY_S, UPTIME_FLUSH_S, TrustManager
from netcore.trust.reputation import UPTIME_JUDGE_S, Reputation
from netcore.wire.addresses import peer_id_for


def new_key() -> str:
    return zmq.curve_keypair()[0].decode("ascii")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(
        self, tmp_path: Path, trust: str = "open", caps: tuple[str, ...] = ("infer",)
    ) -> None:
        self.config = Config(data_dir=tmp_path / "node", name="me", trust=trust, caps=caps)
        self.peers = PeerTable()
        self.events: list[Event] = []
        self.dropped: list[tuple[str, str]] = []
        self.clock = Clock()
        self.trust = TrustManager(self.config, self.peers, self.events.append, clock=self.clock)
        self.identity = load_or_create(self.config.data_dir)

    def open(self) -> TrustManager:
        self.trust.open(self.identity)
        self.trust._drop_peer = lambda peer_id, reason: self.dropped.append((peer_id, reason))
        return self.trust

    def worker(self, key: str, name: str = "w") -> Any:
        peer, _ = self.peers.upsert(peer_id_for(key), key, "mdns", name=name, caps=["infer"])
        peer.greeted = True
        return peer


async def test_open_mode_admits_everyone(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    trust = h.open()
    stranger = h.worker(new_key())
    assert trust.admits(stranger.key) and trust.on_discovered(stranger.key)
    assert trust.may_dial(stranger)
    assert trust.gate(stranger) == pytest.approx(1.25)  # a new peer's cost factor
    assert not trust.trusted(stranger.key)
    assert trust.trusted(h.identity.public_text)  # our own key always is
    await trust.close()


async def test_allowlist_admits_listed_and_own_keys_only(tmp_path: Path) -> None:
    friend, stranger = new_key(), new_key()
    listed = TrustList(trust_path(tmp_path / "node"))
    listed.add(friend, "friend")
    listed.save()
    client = load_or_create(tmp_path / "node" / "client")  # our own client: trusted too
    h = Harness(tmp_path, trust="allowlist")
    trust = h.open()
    assert trust.policy.callback("p2pai", friend.encode())
    assert trust.policy.callback("p2pai", client.public_key)
    assert not trust.policy.callback("p2pai", stranger.encode())
    assert trust.policy.refused == 1
    assert not trust.on_discovered(stranger) and trust.counters["untrusted_mdns"] == 1
    shared = h.worker(stranger)
    shared.greeted = False
    assert not trust.may_dial(shared) and shared.peer_id not in h.peers  # never kept
    assert trust.gate(h.worker(friend)) is not None
    assert trust.gate(h.worker(stranger)) is None
    await trust.close()


async def test_a_broken_list_stops_an_allowlist_node_only(tmp_path: Path) -> None:
    path = trust_path(tmp_path / "node")
    path.parent.mkdir(parents=True)
    path.write_text("{broken")
    path.chmod(0o600)
    with pytest.raises(TrustError, match="corrupt"):
        Harness(tmp_path, trust="allowlist").open()
    trust = Harness(tmp_path, trust="open").open()  # open: warned, ignored
    await trust.close()


async def test_revoking_a_key_drops_the_peer(tmp_path: Path) -> None:
    friend = new_key()
    listed = TrustList(trust_path(tmp_path / "node"))
    listed.add(friend, "friend")
    listed.save()
    h = Harness(tmp_path, trust="allowlist")
    trust = h.open()
    peer = h.worker(friend)
    trust.tick()
    assert h.dropped == []
    listed.remove("friend")
    listed.save()
    listed.path.touch()  # a new mtime even within the same clock tick
    trust.trust_list.mtime_ns = -1
    trust.tick()
    assert h.dropped == [(peer.peer_id, "untrusted")]
    assert not trust.admits(friend)
    await trust.close()


async def test_a_quarantine_is_published_shown_and_persisted(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    trust = h.open()
    liar = h.worker(new_key(), "liar")
    for _ in range(2):
        trust.observe(liar, "ok")
        trust.record(liar.peer_id, "votes_lost")
    assert "lost 2 of 2 votes" in trust.quarantined(liar.peer_id)
    assert trust.gate(liar) is None
    assert liar.quarantine and liar.score is not None and liar.score < 0.5
    shown = [e for e in h.events if isinstance(e, PeerQuarantine)]
    assert len(shown) == 1 and shown[0].quarantined and shown[0].name == "liar"
    await trust.close()

    # A fresh manager on the same base dir knows at once.
    again = Harness(tmp_path).open()
    assert "lost 2 of 2 votes" in again.quarantined(liar.peer_id)
    row = next(r for r in again.store.load_reputation() if r.peer_id == liar.peer_id)  # type: ignore[union-attr]
    assert row.quarantined_at is not None and "votes" in row.quarantine_reason
    await again.close()


async def test_uptime_and_scores_reach_the_peer_table(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    trust = h.open()
    peer = h.worker(new_key())
    h.clock.now += 1.0
    trust.tick()
    assert peer.score == pytest.approx(0.8, abs=0.01)
    h.clock.now += 10.0
    trust.tick()
    assert trust.store.load_reputation() == []  # type: ignore[union-attr]  # uptime alone waits
    h.clock.now += UPTIME_FLUSH_S
    trust.tick()
    row = trust.store.load_reputation()[0]  # type: ignore[union-attr]
    # (one tick counts at most 10 s of uptime: a suspended laptop was not up meanwhile)
    assert row.uptime_s == pytest.approx(21.0) and row.peer_id == peer.peer_id
    await trust.close()


async def test_a_task_observation_is_saved_within_the_short_flush(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    trust = h.open()
    peer = h.worker(new_key())
    trust.observe(peer, "ok")
    h.clock.now += FLUSH_EVERY_S
    trust.tick()
    row = trust.store.load_reputation()[0]  # type: ignore[union-attr]
    assert row.counts["tasks_ok"] == 1
    await trust.close()


def test_uptime_alone_rejudges_a_score_only_after_a_minute() -> None:
    rep = Reputation()
    rep.add_uptime("k", "p", "n", 1.0)
    assert rep.refresh() == [] and not rep.records["k"].stale
    rep.add_uptime("k", "p", "n", UPTIME_JUDGE_S)
    assert rep.records["k"].stale
    rep.refresh()
    assert not rep.records["k"].stale and rep.records["k"].unjudged_uptime_s == 0


async def test_a_hello_with_our_own_key_is_refused_and_reported(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    trust = h.open()
    trust.clones.endpoints = ["tcp://127.0.0.1:5000"]  # type: ignore[union-attr]
    msg = {"endpoints": ["tcp://127.0.0.1:6000"], "caps": ["infer"]}
    refused = trust.check_hello(b"rid", h.identity.public_text, msg)
    assert refused is not None and "own key" in refused
    errors = [e.message for e in h.events if isinstance(e, NodeError)]
    assert len(errors) == 1
    assert "copied data dir" in errors[0] and "tcp://127.0.0.1:6000" in errors[0]
    assert str(tmp_path / "node" / "identity.key_secret") in errors[0]
    trust.check_hello(b"rid2", h.identity.public_text, msg)
    assert len([e for e in h.events if isinstance(e, NodeError)]) == 1  # said once a minute
    await trust.close()


def test_client_only_nodes_share_an_identity_without_alarm(tmp_path: Path) -> None:
    identity = load_or_create(tmp_path)
    told: list[str] = []
    clients = CloneDetector(identity, tmp_path, (), told.append)
    assert not clients.on_hello_from_self(["tcp://127.0.0.1:7000"], ["infer"])
    workers = CloneDetector(identity, tmp_path, ("infer",), told.append)
    assert not workers.on_hello_from_self([], [])  # a client-only twin: no endpoints
    assert workers.on_hello_from_self(["tcp://127.0.0.1:7000"], ["infer"])
    assert told == [clone_message(identity.peer_id, tmp_path, ["tcp://127.0.0.1:7000"])]


class FakeFrame:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def get(self, option: int) -> int:
        assert option == zmq.SRCFD
        return self.fd


def test_the_guard_tracks_owners_and_takeovers() -> None:
    guard = ConnectionGuard()
    a, b = new_key(), new_key()
    assert not guard.seen(b"rid-1", a, FakeFrame(10))
    assert guard.owner(b"rid-1") == a
    assert not guard.seen(b"rid-1", a, FakeFrame(10))
    assert guard.seen(b"rid-1", b, FakeFrame(11))  # another key on that routing id
    assert guard.reused == 1 and guard.owner(b"rid-1") == b
    guard._owners[b"rid-1"].live = False  # as a DISCONNECTED event does
    assert guard.owner(b"rid-1") is None
    assert guard.seen(b"rid-1", a, FakeFrame(12)) and guard.reused == 2


def test_the_guard_spots_one_key_at_two_live_endpoints() -> None:
    guard = ConnectionGuard()
    key = new_key()
    guard.seen(b"r1", key, FakeFrame(1))
    assert guard.note_hello(b"r1", key, ["tcp://10.0.0.1:1"]) == []
    guard.seen(b"r2", key, FakeFrame(2))
    assert guard.note_hello(b"r2", key, ["tcp://10.0.0.2:1"]) == ["tcp://10.0.0.1:1"]
    guard._owners[b"r1"].live = False  # the first one left: a restart, not a clone
    guard.seen(b"r3", key, FakeFrame(3))
    assert guard.note_hello(b"r3", key, ["tcp://10.0.0.3:1"]) == ["tcp://10.0.0.2:1"]


def test_the_guard_bounds_its_memory() -> None:
    guard = ConnectionGuard(max_tracked=3)
    key = new_key()
    for n in range(10):
        guard.seen(bytes([n]), key, FakeFrame(n))
    assert len(guard._owners) == 3


# --- issue 16: probation, quarantines that end, votes given back --------------------------------


async def test_on_probation_until_three_blind_checks_but_never_our_own(tmp_path: Path) -> None:
    friend = new_key()
    listed = TrustList(trust_path(tmp_path / "node"))
    listed.add(friend, "friend")
    listed.save()
    h = Harness(tmp_path)
    trust = h.open()
    stranger = h.worker(new_key(), "stranger")
    assert trust.on_probation(stranger.peer_id) and trust.peer_on_probation(stranger)
    assert trust.on_probation("0123456789abcdef0123"), "an unknown peer is on probation"
    assert not trust.on_probation(h.identity.peer_id), "our own identity never"
    h.worker(friend, "friend")
    assert trust.on_probation(peer_id_for(friend)), "a listed key counts only in allowlist mode"
    for _ in range(3):
        trust.record(stranger.peer_id, "spot_passed")
    assert not trust.on_probation(stranger.peer_id)
    await trust.close()
    strict = Harness(tmp_path, trust="allowlist").open()
    assert not strict.on_probation(peer_id_for(friend))
    await strict.close()


async def test_a_quarantine_ends_in_every_process_sharing_the_store(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.trust.reputation.policy = replace(h.trust.reputation.policy, cooldown_s=30.0)
    trust = h.open()
    liar = h.worker(new_key(), "liar")
    for _ in range(2):
        trust.record(liar.peer_id, "votes_lost")
    assert trust.gate(liar) is None
    other = Harness(tmp_path)  # e.g. `p2pai submit` beside the node
    second = other.open()
    assert second.quarantined(liar.peer_id), "read from the store"
    # The cool-down passes (the reputation's clock is the wall clock).
    for manager in (trust, second):
        manager.reputation.clock = lambda: 10**10
    trust.tick()
    assert trust.gate(liar) is not None and not liar.quarantine
    assert trust.on_probation(liar.peer_id)
    shown = [e for e in h.events if isinstance(e, PeerQuarantine)]
    assert [e.quarantined for e in shown] == [True, False]
    row = next(r for r in trust.store.load_reputation() if r.peer_id == liar.peer_id)  # type: ignore[union-attr]
    assert row.quarantined_until is None and row.offences == 1
    second.flush()
    assert not second.quarantined(liar.peer_id)
    # A second offence: twice the cool-down.
    for _ in range(2):
        trust.record(liar.peer_id, "votes_lost")
    record = trust.reputation.get(liar.key)
    assert record is not None and record.offences == 2
    assert record.quarantined_until == 10**10 + 60.0
    await trust.close()
    await second.close()


async def test_restored_votes_lift_a_quarantine_and_persist(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    trust = h.open()
    honest = h.worker(new_key(), "honest")
    for _ in range(2):
        trust.record(honest.peer_id, "votes_lost")  # outvoted by colluders
    assert trust.gate(honest) is None
    trust.restore_votes([honest.peer_id, "unknown-peer-id-00"], 2)
    assert trust.gate(honest) is not None and not trust.quarantined(honest.peer_id)
    await trust.close()
    again = Harness(tmp_path).open()
    row = next(r for r in again.store.load_reputation() if r.peer_id == honest.peer_id)  # type: ignore[union-attr]
    assert row.counts["votes_lost"] == 0 and row.counts["votes_won"] == 2
    assert row.offences == 0 and row.quarantined_until is None
    assert not again.quarantined(honest.peer_id)
    await again.close()
