"""Bounded dialling (issue 16): an endpoint named in a hello is a candidate, not a peer.

Adversaries, all real: a CURVE client (its own key) whose hello names a plain TCP listener
(a socket server in this test that counts the connections it accepts), another whose hello
names a real CURVE ROUTER holding a different key, both of which then leave; and an honest
worker killed with SIGKILL whose port a plain listener takes over (a stale endpoint). The
requester is a real ``p2pai node`` process; its liveness is scaled down by a config file so
that the test is short. On main it connected ~10 times a second, and kept going after the
naming peer left (recall probes the DEALER for 10 minutes)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from tests.integration.conftest import LOOPBACK, NodeProc

pytestmark = pytest.mark.integration

MAX_CONNECTIONS = 20
"""Issue 16's bound on connections to a non-p2pai endpoint, in all."""
SCALED = "ping_interval = 0.5\nevasive_after = 1.0\nexpired_after = 2.0\n"


class PlainListener:
    """A TCP server that is not a p2pai node: accepts, counts, closes."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, port))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[float] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"tcp://{LOOPBACK}:{self.port}"

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(time.monotonic())
            conn.close()

    def since(self, t: float) -> int:
        return sum(1 for at in self.accepted if at >= t)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


class OtherKeyRouter:
    """A real CURVE ROUTER with a key of its own: a ZeroMQ node, but not the one announced."""

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        public, secret = zmq.curve_keypair()
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.curve_server = True
        self.router.curve_publickey = public
        self.router.curve_secretkey = secret
        self.monitor = self.router.get_monitor_socket(zmq.EVENT_ACCEPTED)
        self.port = self.router.bind_to_random_port(f"tcp://{LOOPBACK}")
        self.accepted: list[float] = []

    @property
    def endpoint(self) -> str:
        return f"tcp://{LOOPBACK}:{self.port}"

    def drain(self) -> None:
        while self.monitor.poll(0):
            recv_monitor_message(self.monitor)
            self.accepted.append(time.monotonic())

    def since(self, t: float) -> int:
        self.drain()
        return sum(1 for at in self.accepted if at >= t)

    def close(self) -> None:
        self.router.disable_monitor()
        self.monitor.close(0)
        self.router.close(0)


@pytest.fixture
def listener() -> Iterator[PlainListener]:
    made = PlainListener()
    yield made
    made.close()


@pytest.fixture
def scaled(tmp_path: Path) -> str:
    path = tmp_path / "scaled.toml"
    path.write_text(SCALED)
    return str(path)


def keep_alive(clients: list[Any], seconds: float) -> None:
    """The naming peers stay live (they ping the requester) for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for client in clients:
            assert client.ping()["t"] == "pong"
        time.sleep(0.25)


def test_hello_naming_a_non_p2pai_endpoint_is_dialled_a_few_times_only(
    start_node: Callable[..., NodeProc],
    raw_client: Callable[..., Any],
    zctx: zmq.Context[Any],
    listener: PlainListener,
    scaled: str,
) -> None:
    node = start_node("req", "--config", scaled)
    other = OtherKeyRouter(zctx)
    try:
        t0 = time.monotonic()
        namers = [raw_client(node), raw_client(node)]
        for client, endpoint in zip(namers, (listener.endpoint, other.endpoint), strict=True):
            reply = client.hello(node.network, name="namer", caps=["infer"], endpoints=[endpoint])
            assert reply["t"] == "hello"
        keep_alive(namers, 4)
        for client, endpoint in zip(namers, (listener.endpoint, other.endpoint), strict=True):
            client.hello(node.network, name="namer", caps=["infer"], endpoints=[endpoint])
        keep_alive(namers, 3)
        live = listener.since(t0), other.since(t0)
        assert live[0] >= 1, "the requester never dialled the named endpoint"
        for client in namers:  # they leave without a word
            client.close()
        left = time.monotonic()
        time.sleep(2.0 + 1.0)  # expired_after, and a turn of the node's tick
        quiet_from = time.monotonic()
        time.sleep(4.0)
        total = listener.since(t0), other.since(t0)
        late = listener.since(quiet_from), other.since(quiet_from)
        print(
            f"\nplain listener: {live[0]} connections while named, {total[0]} in all, "
            f"{listener.since(left)} after the namer left, {late[0]} after it expired; "
            f"other-key router: {live[1]} / {total[1]} / {other.since(left)} / {late[1]}"
        )
        assert total[0] <= MAX_CONNECTIONS, f"{total[0]} connections to a plain TCP listener"
        assert total[1] <= MAX_CONNECTIONS, f"{total[1]} connections to a router of another key"
        assert late == (0, 0), f"still dialling after the naming peers left: {late}"
        assert node.alive()
        assert "Traceback" not in node.stderr()
    finally:
        other.close()


def test_stale_endpoint_taken_by_a_plain_listener_is_not_stormed(
    start_node: Callable[..., NodeProc], scaled: str
) -> None:
    """An honest peer killed (no bye): its endpoint is recalled, but once a non-p2pai
    listener holds its port the handshakes fail and the dials stop."""
    node = start_node("req", "--config", scaled)
    worker = start_node("w")
    node.wait_peer_up(worker.peer_id)
    port = worker.port
    worker.kill()
    assert worker.wait_exit(10) is not None
    stale = PlainListener(port)
    try:
        t0 = time.monotonic()
        time.sleep(6.0)
        quiet_from = time.monotonic()
        time.sleep(4.0)
        total, late = stale.since(t0), stale.since(quiet_from)
        print(f"\nstale endpoint: {total} connections in all, {late} in the last 4 s")
        down = node.wait_for("peer_down", lambda e: e["peer_id"] == worker.peer_id, timeout=10)
        assert down["reason"] == "expired"
        assert total <= MAX_CONNECTIONS, f"{total} connections to a stale endpoint"
        assert late == 0, f"still dialling a stale endpoint: {late}"
        assert "Traceback" not in node.stderr()
    finally:
        stale.close()
