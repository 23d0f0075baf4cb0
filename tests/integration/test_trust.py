"""Trust against real nodes in this process: a lying worker beside honest ones, allowlists,
routing-id takeovers, clones, and reputation across a restart.

Every node binds 127.0.0.1 only, on a network name unique to its test, with its data under
``tmp_path``; every node is stopped at the end. Tests wait on conditions, never on sleeps.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
import zmq.asyncio
from liar import LyingNode

from netcore.config.settings import Config
from netcore.models.registry import load_samples
from netcore.node import Node
from netcore.observe.events import Event, NodeError, PeerQuarantine, PeerUp
from netcore.tasks.spot_checks import SpotChecker
from netcore.tasks.verify import Verifier
from netcore.trust.keys import TrustList, trust_path
from netcore.wire import protocol
from netcore.wire.addresses import peer_id_for

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
GUARD_S = 60.0
"""A hang guard for waits: conditions normally hold within a second or two."""


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = GUARD_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


class Swarm:
    """Nodes on one private network; all stopped by :meth:`close`."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.network = f"trust-{uuid.uuid4().hex[:10]}"
        self.nodes: list[Node] = []
        self.events: dict[str, list[Event]] = {}
        self._readers: list[asyncio.Task[None]] = []

    def config(self, name: str, **extra: Any) -> Config:
        extra.setdefault("data_dir", self.tmp_path / name)
        return Config(interfaces=(LOOPBACK,), network=self.network, name=name, **extra)

    async def add(self, node: Node, name: str) -> Node:
        self.nodes.append(node)
        got = self.events.setdefault(name, [])
        sub = node.events()

        async def read() -> None:
            async for event in sub:
                got.append(event)

        self._readers.append(asyncio.get_running_loop().create_task(read()))
        await node.start()
        return node

    async def node(self, name: str, **extra: Any) -> Node:
        return await self.add(Node(self.config(name, **extra)), name)

    async def liar(self, name: str, mode: str, **extra: Any) -> LyingNode:
        node = LyingNode(self.config(name, **extra), mode, delay=1.0)
        await self.add(node, name)
        return node

    async def stop(self, node: Node) -> None:
        await node.stop()

    async def close(self) -> None:
        for node in reversed(self.nodes):
            await node.stop()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


@pytest.fixture
async def swarm(tmp_path: Path) -> AsyncIterator[Swarm]:
    group = Swarm(tmp_path)
    try:
        yield group
    finally:
        await group.close()


def reference(samples: np.ndarray) -> tuple[list[int], list[bytes]]:
    """The true labels and digests of ``samples``, one at a time, from the shipped model."""
    from netcore.models.registry import ModelRegistry, assets_dir

    registry = ModelRegistry([assets_dir() / "models"])  # the shipped models, nothing written
    spec = registry.find("digits")
    assert spec is not None
    loaded = registry.load(spec)
    labels, digests = [], []
    for i in range(len(samples)):
        out = loaded.run({"input": samples[i : i + 1]})
        labels.append(int(out["label"].reshape(-1)[0]))
        digests.append(protocol.digest_tensors(protocol.tensor_map(out)))
    return labels, digests


async def run_verified(
    verifier: Verifier, samples: np.ndarray, count: int, lanes: int = 8
) -> list[tuple[int, Any]]:
    """``count`` tasks over ``lanes`` concurrent lanes; (sample index, outcome) each."""
    results: list[tuple[int, Any]] = []
    indices = iter(range(count))

    async def lane() -> None:
        for i in indices:
            row = i % len(samples)
            results.append((row, await verifier.submit("digits", samples[row : row + 1])))

    await asyncio.gather(*(lane() for _ in range(lanes)))
    return results


async def quarantine_liar(
    swarm: Swarm, mode: str, vote: str, requester_dir: Path | None = None
) -> tuple[Node, LyingNode, list[tuple[int, Any]]]:
    """Three honest workers, one liar, a requester verifying with redundancy 3 until the liar
    is quarantined; returns the requester, the liar and every (sample, outcome)."""
    for i in range(3):
        await swarm.node(f"honest-{i}", capacity=1)
    liar = await swarm.liar("liar", mode, capacity=1)
    extra: dict[str, Any] = {"caps": (), "task_timeout": 0.5}
    if requester_dir is not None:
        extra["data_dir"] = requester_dir
    requester = await swarm.node("requester", **extra)
    await wait_until(lambda: len(requester.usable_peers(model="digits")) == 4, "four workers")
    verifier = Verifier(requester, redundancy=3, vote=vote)
    samples = load_samples()[0]
    outcomes: list[tuple[int, Any]] = []
    for _ in range(20):  # rounds of 60 tasks; a liar is caught within a few
        outcomes += await run_verified(verifier, samples, 60)
        if requester.trust.quarantined(liar.peer_id):
            break
        if mode == "slow":  # its timeouts are counted when they expire, in the background
            held = requester.peers.get(liar.peer_id)
            assert held is not None
            await wait_until(
                lambda p=held: bool(requester.trust.quarantined(liar.peer_id)) or p.inflight == 0,  # type: ignore[misc]
                "the liar's attempts to time out",
            )
            if requester.trust.quarantined(liar.peer_id):
                break
    await verifier.aclose()
    return requester, liar, outcomes


# --- verified results and reputation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "vote", "reason"),
    [
        # Caught by its probation trials (blind checks of real inputs) before it ever votes.
        ("wrong_label", "digest", "spot checks"),
        ("random", "label", "spot checks"),
        ("bad_digest", "digest", "corrupt"),
        ("slow", "label", "timed out"),
    ],
)
async def test_redundancy_3_accepts_only_correct_results_and_quarantines_the_liar(
    swarm: Swarm, mode: str, vote: str, reason: str
) -> None:
    requester, liar, outcomes = await quarantine_liar(swarm, mode, vote)
    samples = load_samples()[0]
    labels, digests = reference(samples)
    assert outcomes, "no task ran"
    assert all(outcome.ok for _, outcome in outcomes), [o.error for _, o in outcomes if not o.ok]
    for row, outcome in outcomes:
        assert outcome.label == labels[row], f"accepted a wrong label for sample {row}"
        assert outcome.agreeing >= 2
        if mode == "wrong_label" or vote == "digest":  # (a random label may be right by chance)
            assert liar.peer_id not in outcome.voters or liar.peer_id in outcome.dissenters
        if vote == "digest":
            assert outcome.digest == digests[row]
    assert liar.asked > 0, "the liar was never asked: the test proves nothing"

    why = requester.trust.quarantined(liar.peer_id)
    assert reason in why, why
    peer = requester.peers.get(liar.peer_id)
    assert peer is not None and reason in peer.quarantine  # what the console and peers show
    assert (requester.trust.score(liar.peer_id) or 1.0) < 0.5
    for other in requester.peers:
        if other.peer_id != liar.peer_id:
            assert not other.quarantine, other.quarantine
    shown = [e for e in swarm.events["requester"] if isinstance(e, PeerQuarantine)]
    assert any(e.peer_id == liar.peer_id and e.quarantined for e in shown)

    # Quarantined: once its last attempts are over, it gets no task, verified or not.
    await wait_until(lambda: peer.inflight == 0, "the liar's last attempts")
    asked = liar.asked
    verifier = Verifier(requester, redundancy=3, vote=vote)
    more = await run_verified(verifier, samples, 30)
    await verifier.aclose()
    for _ in range(10):
        assert (await requester.submit("digits", samples[:1])).worker != liar.peer_id
    assert all(outcome.ok and outcome.label == labels[row] for row, outcome in more)
    assert liar.asked == asked


async def test_reputation_survives_a_restart(swarm: Swarm, tmp_path: Path) -> None:
    data_dir = tmp_path / "requester-dir"
    requester, liar, _ = await quarantine_liar(swarm, "wrong_label", "digest", data_dir)
    why = requester.trust.quarantined(liar.peer_id)
    assert why
    await requester.stop()
    assert (data_dir / "p2pai.db").exists()

    again = await swarm.node("requester-again", data_dir=data_dir, caps=(), task_timeout=0.5)
    # Known at once, before any task: from the store.
    assert "spot checks" in again.trust.quarantined(liar.peer_id)
    await wait_until(lambda: len(again.usable_peers(model="digits")) == 4, "four workers")
    peer = again.peers.get(liar.peer_id)
    assert peer is not None
    await wait_until(lambda: peer.quarantine != "", "the peer row to show the quarantine")
    asked = liar.asked
    samples = load_samples()[0]
    verifier = Verifier(again, redundancy=3, vote="digest")
    outcomes = await run_verified(verifier, samples, 30)
    await verifier.aclose()
    assert all(outcome.ok for _, outcome in outcomes)
    assert liar.asked == asked


async def test_spot_checks_catch_a_liar_without_redundancy(swarm: Swarm) -> None:
    for i in range(2):
        await swarm.node(f"honest-{i}", capacity=1)
    liar = await swarm.liar("liar", "wrong_label", capacity=1)
    requester = await swarm.node("requester", caps=())
    await wait_until(lambda: len(requester.usable_peers(model="digits")) == 3, "three workers")
    samples, labels = load_samples()
    assert labels is not None
    spot = SpotChecker.from_reference(
        "digits", samples, labels, rate=0.5, registry=requester.registry, seed=1
    )
    verifier = Verifier(requester, redundancy=1, spot=spot)
    for _ in range(20):
        await run_verified(verifier, samples, 20, lanes=2)
        if requester.trust.quarantined(liar.peer_id):
            break
    await verifier.aclose()
    why = requester.trust.quarantined(liar.peer_id)
    assert "spot checks" in why, why
    assert verifier.stats.spot_failed >= 1
    assert verifier.stats.spot_passed >= 1  # the honest ones were checked too
    for peer in requester.peers:
        if peer.peer_id != liar.peer_id:
            assert not peer.quarantine


async def test_new_liars_never_vote_and_a_task_waits_for_voters(swarm: Swarm) -> None:
    """Two liars and one honest worker, all new: the liars' probation trials fail their blind
    checks (quarantined, never voters); with one voter left a vote of 3 waits for a second
    one, then fails with a clear one-line reason (the no_majority text: tests/test_verify.py)."""
    await swarm.node("honest", capacity=1)
    liar_a = await swarm.liar("liar-a", "wrong_label", capacity=1)
    liar_b = await swarm.liar("liar-b", "other_label", capacity=1)
    requester = await swarm.node("requester", caps=())
    await wait_until(lambda: len(requester.usable_peers(model="digits")) == 3, "three workers")
    verifier = Verifier(requester, redundancy=3, vote="label", wait_s=3.0)
    samples = load_samples()[0]
    outcome = await verifier.submit("digits", samples[:1])
    await verifier.aclose()
    assert outcome.error_code == "too_few_workers", outcome
    assert "redundancy 3 needs 2 voters" in outcome.error and "after waiting 3s" in outcome.error
    assert "2 quarantined" in outcome.error and "\n" not in outcome.error
    for liar in (liar_a, liar_b):
        assert "spot checks" in requester.trust.quarantined(liar.peer_id)
    assert verifier.stats.waited == 1 and verifier.stats.mismatches >= 2


# --- allowlist -------------------------------------------------------------------------------


async def test_allowlist_untrusted_node_gets_no_connection_and_no_task(
    swarm: Swarm, tmp_path: Path
) -> None:
    trusted = await swarm.node("trusted", capacity=1)
    untrusted = await swarm.node("untrusted", capacity=1)
    base = tmp_path / "requester"
    trust_list = TrustList(trust_path(base))
    trust_list.add(trusted.identity.public_text, "trusted")  # type: ignore[union-attr]
    trust_list.save()
    requester = await swarm.node("requester", data_dir=base, caps=(), trust="allowlist")

    await wait_until(lambda: len(requester.usable_peers(model="digits")) == 1, "the trusted worker")
    # The untrusted one finds us by mDNS and dials: ZAP refuses it. We never dial it back.
    await wait_until(lambda: requester.trust.policy.refused > 0, "a refused handshake")
    await wait_until(lambda: requester.trust.counters["untrusted_mdns"] > 0, "an ignored sighting")
    assert untrusted.peer_id not in requester.peers
    assert untrusted.peer_id not in requester.transport.links  # type: ignore[union-attr]
    assert requester.peer_id not in untrusted.usable_peers(kind=None)

    samples = load_samples()[0]
    for row in range(20):
        outcome = await requester.submit("digits", samples[row : row + 1])
        assert outcome.ok and outcome.worker == trusted.peer_id
    assert untrusted.counters["tasks_served"] == 0
    assert trusted.counters["tasks_served"] == 20

    # A raw client with a fresh key gets no connection at all: its hello is never answered.
    ctx = zmq.asyncio.Context()
    try:
        raw = RawAsync(ctx, requester.endpoint, requester.identity.public_text)  # type: ignore[union-attr]
        raw.send({"t": "hello", "id": os.urandom(16), "name": "x", "net": swarm.network,
                  "caps": [], "endpoints": [], "models": [], "accel": [], "capacity": 0})  # fmt: skip
        assert await raw.recv(1.0) is None
        raw.close()
    finally:
        ctx.destroy(linger=0)

    # Revoked while connected: dropped within a tick, and no task goes to it any more.
    trust_list.remove("trusted")
    trust_list.save()
    await wait_until(lambda: trusted.peer_id not in requester.peers, "the revoked peer to go")
    outcome = await requester.submit("digits", samples[:1], timeout=0.3, deadline=0.6)
    assert not outcome.ok
    assert trusted.counters["tasks_served"] == 20


# --- routing ids -----------------------------------------------------------------------------


class RawAsync:
    """A CURVE DEALER (asyncio) with an optional routing id, to impersonate connections."""

    def __init__(
        self, ctx: zmq.asyncio.Context, endpoint: str, server_key: str, routing_id: bytes = b""
    ) -> None:
        assert endpoint.startswith(f"tcp://{LOOPBACK}:"), endpoint
        self.public, secret = zmq.curve_keypair()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode("ascii"))
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        if routing_id:
            sock.setsockopt(zmq.ROUTING_ID, routing_id)
        sock.connect(endpoint)
        self.sock = sock

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.send(msgpack.packb({"v": 1, **msg}, use_bin_type=True), flags=zmq.DONTWAIT)

    async def recv(self, timeout: float) -> dict[str, Any] | None:
        try:
            frame = await asyncio.wait_for(self.sock.recv(), timeout)
        except asyncio.TimeoutError:
            return None
        msg = msgpack.unpackb(frame, raw=False)
        assert isinstance(msg, dict)
        return msg

    async def request(self, msg: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        msg = {**msg, "id": os.urandom(16)}
        self.send(msg)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            reply = await self.recv(remaining)
            if reply is not None and reply.get("id") == msg["id"]:
                return reply
        raise AssertionError(f"no reply to {msg['t']!r}")

    def close(self) -> None:
        self.sock.close(linger=0)


def hello(network: str, name: str) -> dict[str, Any]:
    return {"t": "hello", "name": name, "net": network, "caps": [], "endpoints": [],
            "models": [], "accel": [], "capacity": 0}  # fmt: skip


def task(sample: np.ndarray) -> dict[str, Any]:
    return {"t": "task", "id": os.urandom(16), "kind": "infer", "model": "digits",
            "inputs": {"input": protocol.encode_tensor(sample)}, "timeout_ms": 10_000}  # fmt: skip


@pytest.mark.parametrize("attacker_speaks", [False, True])
async def test_a_connection_that_takes_another_routing_id_never_gets_its_replies(
    swarm: Swarm, attacker_speaks: bool
) -> None:
    worker = await swarm.liar("worker", "slow", capacity=1)  # honest answers, 1 s late
    sample = load_samples()[0][:1]
    ctx = zmq.asyncio.Context()
    rid = b"victim-routing-id"
    try:
        victim = RawAsync(ctx, worker.endpoint, worker.identity.public_text, rid)  # type: ignore[union-attr]
        assert (await victim.request(hello(swarm.network, "victim")))["t"] == "hello"
        victim_task = task(sample)
        victim.send(victim_task)
        await wait_until(lambda: worker.asked == 1, "the worker to start the victim's task")
        victim.close()

        # The attacker reconnects with the victim's routing id while the task runs.
        attacker = RawAsync(ctx, worker.endpoint, worker.identity.public_text, rid)  # type: ignore[union-attr]
        if attacker_speaks:
            # ZeroMQ refuses the routing id until the victim's connection is gone: retry.
            reply = None
            for _ in range(20):
                attacker.send({"t": "ping", "id": os.urandom(16), "ts": 1.0})
                if (reply := await attacker.recv(0.5)) is not None:
                    break
                attacker.close()
                attacker = RawAsync(ctx, worker.endpoint, worker.identity.public_text, rid)  # type: ignore[union-attr]
            # Served as itself only: its connection is not greeted by the victim's hello...
            assert reply is not None and reply["t"] == "error", reply
            assert reply["code"] == "hello_required"
            assert (await attacker.request(hello(swarm.network, "attacker")))["t"] == "hello"
            pong = await attacker.request({"t": "ping", "ts": 2.0})
            assert pong["t"] == "pong"
        # ... and whatever it does, the victim's result never reaches it.
        await wait_until(lambda: worker.counters["tasks_served"] >= 1, "the victim's task to end")
        got = await attacker.recv(1.5)
        while got is not None:
            assert got.get("id") != victim_task["id"], "the attacker got the victim's result"
            got = await attacker.recv(0.5)
        assert worker.trust.stats()["replies_withheld"] >= 1
        if attacker_speaks:
            # Counted, and announced under its own key, never the victim's.
            assert worker.trust.stats()["routing_id_reused"] >= 1
            ups = {e.name: e.peer_id for e in swarm.events["worker"] if isinstance(e, PeerUp)}
            assert ups["attacker"] == peer_id_for(attacker.public)
            assert ups["victim"] != ups["attacker"]
        attacker.close()
    finally:
        ctx.destroy(linger=0)


# --- clones ----------------------------------------------------------------------------------


async def test_two_live_nodes_with_one_identity_are_both_told(swarm: Swarm, tmp_path: Path) -> None:
    observer = await swarm.node("observer", capacity=1)
    first = await swarm.node("first", capacity=1)
    shutil.copytree(tmp_path / "first", tmp_path / "copy")
    second = await swarm.node("second", data_dir=tmp_path / "copy", capacity=1)
    assert first.peer_id == second.peer_id

    def told(name: str) -> list[str]:
        return [
            e.message for e in swarm.events[name]
            if isinstance(e, NodeError) and "copied data dir" in e.message
        ]  # fmt: skip

    await wait_until(lambda: bool(told("first")) and bool(told("second")), "both clones told")
    for name, node, other in (("first", first, second), ("second", second, first)):
        message = told(name)[0]
        assert "identity.key_secret" in message and "move" in message
        assert other.endpoint in message
        assert "\n" not in message
        assert node.peer_id not in node.peers  # a clone is never taken for a peer
    await wait_until(
        lambda: observer.trust.counters["clone_suspects"] > 0, "the observer's warning"
    )
    assert not [e for e in swarm.events["observer"] if isinstance(e, NodeError)]


async def test_a_forged_mdns_record_of_our_identity_is_not_a_clone(swarm: Swarm) -> None:
    from zeroconf import IPVersion, ServiceInfo
    from zeroconf.asyncio import AsyncZeroconf

    node = await swarm.node("node", capacity=1)
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)  # an endpoint that does not hold the node's key
    public, secret = zmq.curve_keypair()
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.CURVE_SERVER, 1)
    router.setsockopt(zmq.CURVE_PUBLICKEY, public)
    router.setsockopt(zmq.CURVE_SECRETKEY, secret)
    port = router.bind_to_random_port(f"tcp://{LOOPBACK}")
    azc = AsyncZeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
    info = ServiceInfo(
        "_p2pai._tcp.local.",
        f"forged{uuid.uuid4().hex[:8]}._p2pai._tcp.local.",
        addresses=[bytes([127, 0, 0, 1])],
        port=port,
        properties={
            "v": "1",
            "id": node.peer_id,
            "key": node.identity.public_text,  # type: ignore[union-attr]
            "net": swarm.network,
            "name": "forger",
            "caps": "infer",
        },
        server="forged.local.",
    )
    try:
        await azc.async_register_service(info, cooperating_responders=True, strict=False)
        await wait_until(
            lambda: node.trust.stats()["forged_self_records"] > 0, "the probe to fail", timeout=20
        )
        assert not [e for e in swarm.events["node"] if isinstance(e, NodeError)]
    finally:
        await azc.async_unregister_all_services()
        await azc.async_close()
        router.close(linger=0)
        ctx.destroy(linger=0)
