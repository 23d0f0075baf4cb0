"""Fixtures for integration tests: real ``p2pai node`` processes on 127.0.0.1.

Rules every test here follows:

* every node binds 127.0.0.1 only and uses a network name unique to its test;
* every data directory lives under the test's ``tmp_path``;
* every process started here is stopped by PID (SIGTERM, then SIGKILL) in a finalizer;
* tests wait on the nodes' JSON events (``NodeProc.wait_for``), never on fixed sleeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
import zmq.utils.z85

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 5.0


def cli_argv() -> list[str]:
    """The installed ``p2pai`` console script beside this interpreter (so its entry point is
    tested too), else ``python -m netcore.cli``."""
    script = Path(sys.executable).with_name("p2pai")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "netcore.cli"]


def child_env() -> dict[str, str]:
    """The environment for child processes: no P2PAI_* settings leak in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PAI_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def peer_id_of(z85_key: bytes | str) -> str:
    """PROTOCOL.md §1, computed independently of netcore."""
    key = z85_key.encode("ascii") if isinstance(z85_key, str) else z85_key
    return hashlib.sha256(zmq.utils.z85.decode(key)).hexdigest()[:20]


def stop_pid(proc: subprocess.Popen[Any], grace: float = STOP_GRACE_S) -> int | None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL; always by this process's own PID."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
    return proc.returncode


class NodeProc:
    """One ``p2pai node --json`` process, its JSON event lines collected by a reader thread."""

    def __init__(
        self,
        name: str,
        network: str,
        data_dir: Path,
        log_dir: Path,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.network = network
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.stderr_path = log_dir / f"{name}.stderr"
        self.argv = [
            sys.executable, "-m", "netcore.cli", "node", "--json",
            "--interface", LOOPBACK,
            "--network", network,
            "--data-dir", str(data_dir),
            "--name", name,
            *extra_args,
        ]  # fmt: skip
        self.events: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.started_at = 0.0
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> NodeProc:
        self.started_at = time.time()
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=child_env(),
                cwd=self.log_dir,
            )
        self._reader = threading.Thread(target=self._read, name=f"reader-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                with self._cond:
                    if isinstance(event, dict) and "event" in event:
                        self.events.append(event)
                    else:
                        self.bad_lines.append(line)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM then SIGKILL by PID; returns the exit code."""
        if self.proc is None:
            return None
        code = stop_pid(self.proc, grace)
        if self._reader is not None:
            self._reader.join(2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def terminate(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    # --- events --------------------------------------------------------------------------

    def snapshot(self, event: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if event is None or e["event"] == event]

    def count(self, event: str, predicate: Callable[[dict[str, Any]], bool] | None = None) -> int:
        return sum(1 for e in self.snapshot(event) if predicate is None or predicate(e))

    def wait_for(
        self,
        event: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10.0,
        count: int = 1,
    ) -> dict[str, Any]:
        """The ``count``-th event named ``event`` that satisfies ``predicate`` (already seen or
        arriving within ``timeout``); fails the test with context otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    e for e in self.events
                    if e["event"] == event and (predicate is None or predicate(e))
                ]  # fmt: skip
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    break
                self._cond.wait(min(remaining, 0.5))
        raise AssertionError(
            f"node {self.name}: no {count}x {event!r} event within {timeout}s "
            f"(alive={self.alive()}); {self.describe()}"
        )

    def describe(self) -> str:
        kinds: dict[str, int] = {}
        for e in self.snapshot():
            kinds[e["event"]] = kinds.get(e["event"], 0) + 1
        return (
            f"events={kinds} bad_lines={self.bad_lines[-3:]} stderr tail: {self.stderr()[-800:]!r}"
        )

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    @property
    def ready(self) -> dict[str, Any]:
        return self.wait_for("ready", timeout=20.0)

    @property
    def peer_id(self) -> str:
        return str(self.ready["peer_id"])

    @property
    def endpoint(self) -> str:
        return str(self.ready["endpoint"])

    @property
    def key(self) -> str:
        return str(self.ready["key"])

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def wait_peer_up(self, peer_id: str, timeout: float = 15.0) -> dict[str, Any]:
        return self.wait_for("peer_up", lambda e: e["peer_id"] == peer_id, timeout)

    def rss_bytes(self) -> int:
        import psutil

        return int(psutil.Process(self.pid).memory_info().rss)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def network() -> str:
    """A swarm name used by this test only."""
    return f"it-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start_node(tmp_path: Path, network: str) -> Iterator[Callable[..., NodeProc]]:
    """Factory: ``start_node("a")`` starts a node on this test's network; all are stopped after."""
    started: list[NodeProc] = []
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)

    def factory(
        name: str,
        *extra_args: str,
        net: str | None = None,
        data_dir: Path | None = None,
        wait_ready: bool = True,
    ) -> NodeProc:
        node = NodeProc(
            name,
            net or network,
            data_dir or tmp_path / "nodes" / name,
            log_dir,
            tuple(extra_args),
        )
        started.append(node)
        node.start()
        if wait_ready:
            node.wait_for("ready", timeout=20.0)
        return node

    yield factory
    for node in started:
        node.stop()


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``p2pai ARGS`` to completion (bounded by ``timeout``)."""

    def run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli_argv(), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(),
            cwd=tmp_path,
            check=False,
        )

    return run


@pytest.fixture
def popen_cli(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``p2pai ARGS`` in the background; stopped by PID after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*cli_argv(), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=tmp_path,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_pid(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# --- a raw CURVE DEALER client -------------------------------------------------------------


def pack(msg: Any) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def new_id() -> bytes:
    return os.urandom(16)


class RawClient:
    """A hand-driven CURVE DEALER to a node's ROUTER: send anything, receive with a timeout."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        endpoint: str,
        server_key: str,
        routing_id: bytes | None = None,
        keypair: tuple[bytes, bytes] | None = None,
    ) -> None:
        assert endpoint.startswith(f"tcp://{LOOPBACK}:"), endpoint
        self.public, self.secret = keypair or zmq.curve_keypair()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.SNDTIMEO, 5000)  # a send never blocks forever
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode("ascii"))
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        if routing_id is not None:
            sock.setsockopt(zmq.ROUTING_ID, routing_id)
        sock.connect(endpoint)
        self.sock = sock

    @property
    def peer_id(self) -> str:
        return peer_id_of(self.public)

    def close(self) -> None:
        self.sock.close(linger=0)

    def send(self, msg: Any, version: int | None = 1) -> None:
        """Send ``msg`` packed; a dict gets ``v`` unless ``version`` is None or it has one."""
        if isinstance(msg, dict) and version is not None and "v" not in msg:
            msg = {"v": version, **msg}
        self.send_raw(pack(msg))

    def send_raw(self, frame: bytes) -> None:
        self.sock.send(frame)

    def send_frames(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout: float = 3.0) -> dict[str, Any] | None:
        """The next reply (decoded), or None if none comes within ``timeout`` seconds."""
        if not self.sock.poll(int(timeout * 1000), zmq.POLLIN):
            return None
        frames = self.sock.recv_multipart()
        assert len(frames) == 1, f"a reply must be one frame, got {len(frames)}"
        msg = msgpack.unpackb(frames[0], raw=False)
        assert isinstance(msg, dict), msg
        return msg

    def recv_for(self, req_id: bytes, timeout: float = 3.0) -> dict[str, Any] | None:
        """The reply that echoes ``req_id``, skipping others (e.g. replies to older requests)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            msg = self.recv(remaining)
            if msg is None:
                return None
            if msg.get("id") == req_id:
                return msg

    def request(self, msg: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send a request with a fresh id (unless it has one) and return its reply."""
        msg = dict(msg)
        msg.setdefault("id", new_id())
        self.send(msg)
        reply = self.recv_for(msg["id"], timeout)
        assert reply is not None, f"no reply to {msg.get('t')!r} within {timeout}s"
        return reply

    def expect_silence(self, timeout: float = 0.3) -> None:
        got = self.recv(timeout)
        assert got is None, f"expected no reply, got {got!r}"

    def hello(self, net: str, name: str = "raw-client", **extra: Any) -> dict[str, Any]:
        msg = {
            "t": "hello",
            "name": name,
            "net": net,
            "caps": [],
            "endpoints": [],
            "models": [],
            "accel": [],
            "capacity": 0,
            **extra,
        }
        return self.request(msg)

    def ping(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.request({"t": "ping", "ts": time.monotonic()}, timeout)


@pytest.fixture
def zctx() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def raw_client(zctx: zmq.Context[Any]) -> Iterator[Callable[..., RawClient]]:
    """Factory: ``raw_client(node)`` connects a fresh CURVE DEALER (fresh key) to ``node``."""
    clients: list[RawClient] = []

    def factory(node: NodeProc, **kwargs: Any) -> RawClient:
        client = RawClient(zctx, node.endpoint, node.key, **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()
