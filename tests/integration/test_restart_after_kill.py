"""A worker killed with SIGKILL (no bye, no goodbye) and restarted from the same data dir on
another port: a running node dials it at its new endpoint, long before the old entry expires.
The worker is a real ``p2pai node`` process, stopped by PID; everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from netcore.bench.procs import NodeProc, stop_all
from netcore.config.settings import Config
from netcore.node import Node

pytestmark = pytest.mark.integration


async def until(condition: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s")
        await asyncio.sleep(0.02)


async def test_a_peer_restarted_after_a_kill_is_dialled_at_its_new_endpoint(
    tmp_path: Path,
) -> None:
    network = f"phoenix-{uuid.uuid4().hex[:10]}"
    node = Node(
        Config(interfaces=("127.0.0.1",), network=network, name="a", data_dir=tmp_path / "a")
    )
    procs: list[NodeProc] = []
    try:
        await node.start()
        first = NodeProc(network, tmp_path / "w", "w")
        procs.append(first)
        await asyncio.to_thread(first.wait_ready, 60)
        peer_id = first.peer_id

        def greeted_at(endpoint: str) -> bool:
            peer = node.peers.get(peer_id)
            link = node.transport.links.get(peer_id) if node.transport else None
            return bool(peer and peer.greeted and link and link.endpoint == endpoint)

        await until(lambda: greeted_at(first.ready["endpoint"]), "greeting", 30)  # type: ignore[index]
        os.kill(first.pid, signal.SIGKILL)
        first.proc.wait()
        again = NodeProc(network, tmp_path / "w", "w-again")  # same key, a new port
        procs.append(again)
        await asyncio.to_thread(again.wait_ready, 60)
        assert again.peer_id == peer_id and again.ready["endpoint"] != first.ready["endpoint"]  # type: ignore[index]
        # Its hello names the new endpoint: the running node re-points its DEALER there. The
        # old entry would only expire after expired_after (10 s).
        await until(lambda: greeted_at(again.ready["endpoint"]), "greeting at the new port", 8)  # type: ignore[index]
    finally:
        await node.stop()
        stop_all(procs)
