"""Liveness only from authenticated traffic: an mDNS forger (its own process, python-zeroconf,
tests/mdns_forger.py) sends a goodbye for two live workers' records, then a TXT record that
renames one ("evil-twin") and empties its capabilities. The requester (a real node in this
process, real mDNS and CURVE) must drop no worker, rename none, and keep running tasks on
them. Issue 16: on main the goodbye dropped both at once, for good."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netcore.config.settings import Config
from netcore.models.registry import load_samples
from netcore.node import Node
from netcore.observe.events import Event, PeerDown
from tests.integration.conftest import NodeProc, child_env

pytestmark = pytest.mark.integration

FORGER = Path(__file__).resolve().parents[1] / "mdns_forger.py"


def forge(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(FORGER), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def wait_until(what: Callable[[], bool], timeout: float, why: str) -> None:
    """A hang guard, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, why
        await asyncio.sleep(0.05)


async def run_tasks(node: Node, count: int) -> list[Any]:
    x = load_samples()[0]
    return [await node.submit("digits", x[i : i + 1], timeout=20) for i in range(count)]


def requester_node(tmp_path: Path, network: str) -> Node:
    """The requester: client-only (no records of its own), real mDNS browsing and CURVE."""
    return Node(
        Config(
            interfaces=("127.0.0.1",),
            network=network,
            name="req",
            data_dir=tmp_path / "req",
            caps=(),
            advertise=False,
        )
    )


async def test_forged_goodbye_drops_no_live_worker(
    start_node: Callable[..., NodeProc], tmp_path: Path, network: str
) -> None:
    w1, w2 = start_node("w1"), start_node("w2")
    workers = {w1.peer_id: w1, w2.peer_id: w2}
    requester = requester_node(tmp_path, network)
    events: list[Event] = []
    requester.observers.append(events.append)
    await requester.start()
    try:
        assert requester.discovery is not None
        gone: list[str] = []
        on_gone = requester.discovery.on_gone

        def spy(instance: str) -> None:
            gone.append(instance)
            on_gone(instance)

        requester.discovery.on_gone = spy
        await wait_until(
            lambda: {p.peer_id for p in requester.peers.workers()} == set(workers),
            30,
            "the requester never saw both workers",
        )
        assert all(o.ok for o in await run_tasks(requester, 4))

        forge("goodbye", *(a for pid in workers for a in ("--instance", pid)))
        await wait_until(lambda: set(gone) >= set(workers), 15, f"goodbye not received: {gone}")
        hints = getattr(requester.membership, "hints", None)  # None on main: dropped at once
        # Probed over CURVE; both answer, so the suspicion clears (a hang guard).
        await wait_until(lambda: hints is None or not hints.suspects, 15, "still suspects")
        dropped = [e for e in events if isinstance(e, PeerDown) and e.peer_id in workers]
        assert not dropped, f"a forged goodbye dropped live workers: {dropped}"
        assert {p.peer_id for p in requester.peers.workers()} == set(workers)
        assert hints is not None and hints.counters["goodbyes_probed"] == 2
        outcomes = await run_tasks(requester, 10)
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
        assert {o.worker for o in outcomes} <= set(workers)
        assert w1.alive() and w2.alive()
    finally:
        await requester.stop()


async def test_forged_txt_renames_nobody(
    start_node: Callable[..., NodeProc], tmp_path: Path, network: str
) -> None:
    w1 = start_node("w1")
    requester = requester_node(tmp_path, network)
    await requester.start()
    try:
        await wait_until(
            lambda: [p.peer_id for p in requester.peers.workers()] == [w1.peer_id], 30, "no w1"
        )
        assert requester.discovery is not None and requester.discovery.azc is not None
        cache = requester.discovery.azc.zeroconf.cache
        txt_name = f"{w1.peer_id}._p2pai._tcp.local."

        def forged_txt_cached() -> bool:
            return any(
                b"evil-twin" in getattr(r, "text", b"") for r in cache.entries_with_name(txt_name)
            )

        forge(
            "rename", "--instance", w1.peer_id, "--key", w1.key, "--net", network,
            "--port", str(w1.port), "--name", "evil-twin", "--caps", "",
        )  # fmt: skip
        await wait_until(forged_txt_cached, 15, "the forged TXT never reached the requester")
        hints = getattr(requester.membership, "hints", None)  # on main: renamed at once
        await wait_until(
            lambda: hints is None or hints.counters["records_ignored"] >= 1, 15, "TXT unseen"
        )
        peer = requester.peers.get(w1.peer_id)
        assert peer is not None, "the forged TXT dropped w1"
        assert peer.name == "w1", f"renamed by a forged TXT: {peer.name!r}"
        assert "infer" in peer.caps, f"capabilities changed by a forged TXT: {peer.caps}"
        assert [p.peer_id for p in requester.peers.workers()] == [w1.peer_id]
        outcomes = await run_tasks(requester, 10)
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    finally:
        await requester.stop()


async def test_a_real_goodbye_with_bye_still_drops_at_once(
    start_node: Callable[..., NodeProc], tmp_path: Path, network: str
) -> None:
    """The honest leave is unchanged: ``bye`` over CURVE (with its goodbye) drops the peer."""
    w1 = start_node("w1")
    requester = requester_node(tmp_path, network)
    events: list[Event] = []
    requester.observers.append(events.append)
    await requester.start()
    try:
        await wait_until(
            lambda: [p.peer_id for p in requester.peers.workers()] == [w1.peer_id], 30, "no w1"
        )
        w1.stop()
        await wait_until(
            lambda: any(isinstance(e, PeerDown) and e.peer_id == w1.peer_id for e in events),
            15,
            "w1's leave was not seen",
        )
        down = next(e for e in events if isinstance(e, PeerDown) and e.peer_id == w1.peer_id)
        assert down.reason in ("bye", "goodbye")
    finally:
        await requester.stop()
