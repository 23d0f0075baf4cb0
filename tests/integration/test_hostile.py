"""Hostile input against one live ``p2pai node`` process: a raw CURVE DEALER, forged mDNS
records, broken start-up conditions and a fuzz burst. The node must answer exactly as
PROTOCOL.md says, never crash, never log a traceback, and keep serving."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
import zmq.utils.z85

from netcore.models.registry import assets_dir, load_samples
from netcore.wire.protocol import digest_tensors

pytestmark = pytest.mark.integration

ERROR_CODES = {
    "bad_request", "bad_input", "unknown_model", "overloaded", "too_large", "unsupported",
    "hello_required", "timeout", "cancelled", "internal",
}  # fmt: skip
MAX_FRAME = 16 * 1024 * 1024
LOOPBACK = "127.0.0.1"
DIGITS_ONNX = assets_dir() / "models" / "digits.onnx"


# --- helpers -------------------------------------------------------------------------------


def new_id() -> bytes:
    return os.urandom(16)


def pack(msg: Any) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def peer_id_of(z85_key: bytes | str) -> str:
    key = z85_key.encode("ascii") if isinstance(z85_key, str) else z85_key
    return hashlib.sha256(zmq.utils.z85.decode(key)).hexdigest()[:20]


def tensor(arr: np.ndarray) -> dict[str, Any]:
    arr = np.ascontiguousarray(arr)
    return {
        "dtype": arr.dtype.name,
        "shape": list(arr.shape),
        "data": arr.astype(arr.dtype.newbyteorder("<")).tobytes(),
    }


def digits_task(x: np.ndarray | None = None, **fields: Any) -> dict[str, Any]:
    if x is None:
        x = load_samples()[0][:1]
    msg: dict[str, Any] = {
        "t": "task",
        "id": new_id(),
        "kind": "infer",
        "model": "digits",
        "inputs": {"input": tensor(x)},
        "timeout_ms": 5000,
    }
    msg.update(fields)
    return msg


def assert_error(reply: dict[str, Any] | None, code: str, req_id: bytes | None = None) -> None:
    assert reply is not None, f"expected error {code}, got no reply"
    assert reply.get("v") == 1, reply
    assert reply.get("t") == "error", reply
    assert reply.get("code") == code, reply
    message = reply.get("message")
    assert isinstance(message, str) and message and "\n" not in message, reply
    if req_id is None:
        assert "id" not in reply, f"no id to echo, yet the reply has one: {reply}"
    else:
        assert reply.get("id") == req_id, reply


def assert_no_traceback(node: Any) -> None:
    err = node.stderr()
    assert "Traceback" not in err, f"node {node.name} logged a traceback:\n{err[-3000:]}"


def assert_serving(node: Any, raw_client: Callable[..., Any]) -> None:
    """The node is alive, greets a fresh connection, answers ping and runs a valid task."""
    assert node.alive(), f"node died: {node.describe()}"
    client = raw_client(node)
    hello = client.hello(node.network)
    assert hello["t"] == "hello", hello
    assert client.ping()["t"] == "pong"
    x = load_samples()[0]
    reply = client.request(digits_task(x[:1]))
    assert reply["t"] == "result", reply
    assert digest_tensors(reply["outputs"]) == reply["digest"]
    assert node.alive()
    assert_no_traceback(node)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def node(start_node: Callable[..., Any]) -> Any:
    return start_node("target")


@pytest.fixture
def client(raw_client: Callable[..., Any], node: Any) -> Any:
    return raw_client(node)


@pytest.fixture
def greeted(client: Any, node: Any) -> Any:
    reply = client.hello(node.network)
    assert reply["t"] == "hello", reply
    return client


# --- envelope ------------------------------------------------------------------------------


def test_envelope_errors(node: Any, client: Any, raw_client: Callable[..., Any]) -> None:
    # Envelope checks come before the greeting check: a fresh connection gets them too.
    for frame in (b"\xc1", b"\x92\x01", b"\x81\xa1t", b"", b"\xde\xff\xff", b"not msgpack at all"):
        client.send_raw(frame)
        assert_error(client.recv(), "bad_request")
    for value in ([1, 2, 3], "hello", 42, None, True, b"\x00" * 16):
        client.send(value, version=None)
        assert_error(client.recv(), "bad_request")
    rid = new_id()
    client.send({"id": rid, "x": 1})  # a map without `t` echoes a 16-byte id
    assert_error(client.recv(), "bad_request", rid)
    client.send({"id": b"short", "x": 1})  # ... but never a malformed one
    assert_error(client.recv(), "bad_request")
    rid = new_id()
    client.send({"t": 5, "id": rid})  # `t` must be a str
    assert_error(client.recv(), "bad_request", rid)
    rid = new_id()
    client.send({"t": "ping", "id": rid, "ts": 1.0}, version=2)
    assert_error(client.recv(), "unsupported", rid)
    rid = new_id()
    client.send({"t": "ping", "id": rid, "ts": 1.0}, version=None)  # no `v` at all
    assert_error(client.recv(), "unsupported", rid)
    rid = new_id()
    client.send({"v": True, "t": "ping", "id": rid, "ts": 1.0})  # True is not 1
    assert_error(client.recv(), "unsupported", rid)
    rid = new_id()
    client.send({"t": "gossip", "id": rid})
    assert_error(client.recv(), "unsupported", rid)
    rid = new_id()
    client.send({"v": 2, "t": "gossip", "id": rid})
    assert_error(client.recv(), "unsupported", rid)
    client.expect_silence()  # exactly one reply each
    assert_serving(node, raw_client)


def test_requests_before_hello_get_hello_required(
    node: Any, client: Any, raw_client: Callable[..., Any]
) -> None:
    for msg in (
        {"t": "ping", "id": new_id(), "ts": 1.0},
        digits_task(),
        {"t": "model_get", "id": new_id(), "name": "digits", "sha256": "0" * 64, "offset": 0,
         "length": 10},
        {"t": "ping", "id": new_id()},  # even an ill-typed request: greeting is checked first
    ):  # fmt: skip
        client.send(msg)
        assert_error(client.recv(), "hello_required", msg["id"])
    client.expect_silence()
    assert node.count("peer_up", lambda e: e["peer_id"] == client.peer_id) == 0

    rid = new_id()
    client.send(
        {"t": "hello", "id": rid, "name": "raw-client", "net": node.network, "caps": [],
         "endpoints": [], "models": [], "accel": [], "capacity": 0, "unknown": {"x": [1]}}
    )  # fmt: skip
    hello = client.recv()
    assert hello is not None and hello["t"] == "hello", hello
    assert hello["v"] == 1
    assert hello["id"] == rid
    assert hello["name"] == "target"
    assert hello["net"] == node.network
    assert hello["caps"] == ["infer"]
    assert hello["endpoints"] == [node.endpoint]
    assert isinstance(hello["accel"], list) and all(isinstance(a, str) for a in hello["accel"])
    assert isinstance(hello["capacity"], int) and hello["capacity"] >= 1
    models = {m["name"]: m for m in hello["models"]}
    digits = models["digits"]
    assert digits["sha256"] == hashlib.sha256(DIGITS_ONNX.read_bytes()).hexdigest()
    assert digits["size"] == DIGITS_ONNX.stat().st_size
    assert digits["inputs"] == [{"name": "input", "dtype": "float32", "shape": [-1, 64]}]
    assert {o["name"] for o in digits["outputs"]} == {"label", "probabilities"}
    assert digits["label_output"] == "label"

    up = node.wait_for("peer_up", lambda e: e["peer_id"] == client.peer_id, timeout=5)
    assert up["source"] == "hello" and up["name"] == "raw-client" and up["endpoint"] == ""

    ts = 12345.5
    rid = new_id()
    client.send({"t": "ping", "id": rid, "ts": ts})
    pong = client.recv()
    assert pong is not None and pong["t"] == "pong" and pong["id"] == rid and pong["ts"] == ts
    for key in ("inflight", "queued", "capacity"):
        assert isinstance(pong[key], int) and pong[key] >= 0
    assert_serving(node, raw_client)


def test_bad_hello_leaves_connection_ungreeted(
    node: Any, client: Any, raw_client: Callable[..., Any]
) -> None:
    base = {"t": "hello", "name": "x", "net": node.network, "caps": [], "endpoints": [],
            "models": [], "accel": [], "capacity": 0}  # fmt: skip
    broken = [
        {k: v for k, v in base.items() if k != "caps"},
        {**base, "caps": ["infer", 1]},
        {**base, "name": b"bytes-name"},
        {**base, "endpoints": "tcp://127.0.0.1:1"},
        {**base, "models": [{"name": "m"}]},
        {**base, "models": ["digits"]},
        {**base, "capacity": "2"},
        {**base, "capacity": True},
        {**base, "accel": [None]},
    ]
    for msg in broken:
        rid = new_id()
        client.send({**msg, "id": rid})
        assert_error(client.recv(), "bad_request", rid)
    client.send({**base, "id": b"\x01" * 15})
    assert_error(client.recv(), "bad_request")
    rid = new_id()
    client.send({"t": "ping", "id": rid, "ts": 1.0})
    assert_error(client.recv(), "hello_required", rid)
    assert node.count("peer_up", lambda e: e["peer_id"] == client.peer_id) == 0
    assert_serving(node, raw_client)


def test_hello_with_another_network(node: Any, client: Any, raw_client: Callable[..., Any]) -> None:
    rid = new_id()
    client.send(
        {"t": "hello", "id": rid, "name": "x", "net": f"{node.network}-other", "caps": [],
         "endpoints": [], "models": [], "accel": [], "capacity": 0}
    )  # fmt: skip
    assert_error(client.recv(), "bad_request", rid)
    for msg in ({"t": "ping", "id": new_id(), "ts": 1.0}, digits_task()):
        client.send(msg)
        assert_error(client.recv(), "bad_request", msg["id"])
    assert node.count("peer_up", lambda e: e["peer_id"] == client.peer_id) == 0
    # A later hello with the right network greets the connection.
    assert client.hello(node.network)["t"] == "hello"
    assert client.ping()["t"] == "pong"
    node.wait_for("peer_up", lambda e: e["peer_id"] == client.peer_id, timeout=5)
    assert_serving(node, raw_client)


# --- tasks ---------------------------------------------------------------------------------


def test_task_errors(node: Any, greeted: Any, raw_client: Callable[..., Any]) -> None:
    x = load_samples()[0][:1]
    good = tensor(x)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("bad_request", digits_task(timeout_ms="5000")),
        ("bad_request", digits_task(timeout_ms=0)),
        ("bad_request", digits_task(timeout_ms=-1)),
        ("bad_request", digits_task(timeout_ms=float("nan"))),
        ("bad_request", digits_task(timeout_ms=True)),
        ("bad_request", {k: v for k, v in digits_task().items() if k != "timeout_ms"}),
        ("bad_request", digits_task(kind=1)),
        ("bad_request", digits_task(model=None)),
        ("bad_request", digits_task(sha256=5)),
        ("bad_request", digits_task(inputs=[good])),
        ("bad_request", digits_task(inputs={"input": {**good, "data": good["data"][:-1]}})),
        ("bad_request", digits_task(inputs={"input": {**good, "shape": [1, 65]}})),
        ("bad_request", digits_task(inputs={"input": {**good, "shape": [1, -64]}})),
        ("bad_request", digits_task(inputs={"input": {**good, "shape": [2**62, 2**62]}})),
        ("bad_request", digits_task(inputs={"input": {**good, "shape": [0, 2**63]}, "x": good})),
        ("bad_request", digits_task(inputs={"input": {**good, "shape": [1] * 9}})),
        ("bad_request", digits_task(inputs={"input": {**good, "dtype": "complex128"}})),
        ("bad_request", digits_task(inputs={"input": {**good, "dtype": "object"}})),
        ("bad_request", digits_task(inputs={"input": {**good, "data": "text"}})),
        ("bad_request", digits_task(inputs={"input": "tensor"})),
        ("bad_input", digits_task(x.astype(np.float64))),
        ("bad_input", digits_task(x[:, :63])),
        ("bad_input", digits_task(x.reshape(64))),
        ("bad_input", digits_task(np.zeros((0, 64), np.float32))),
        ("bad_input", digits_task(inputs={"pixels": good})),
        ("bad_input", digits_task(inputs={"input": good, "extra": good})),
        ("bad_input", digits_task(inputs={})),
        ("unknown_model", digits_task(model="no-such-model")),
        ("unknown_model", digits_task(sha256="0" * 64)),
        ("unsupported", digits_task(kind="train")),
    ]
    refused = 0
    for code, msg in cases:
        greeted.send(msg)
        reply = greeted.recv_for(msg["id"])
        assert_error(reply, code, msg["id"])
        refused += code not in ("bad_request",)
    greeted.expect_silence()
    # Refusals past validation are reported as served-but-failed, for this client's key.
    node.wait_for(
        "task_served", lambda e: e["requester"] == greeted.peer_id and not e["ok"], 10, refused
    )
    assert node.count("task_served", lambda e: e["ok"]) == 0
    assert_serving(node, raw_client)


def test_valid_tasks_on_held_out_samples(
    node: Any, greeted: Any, raw_client: Callable[..., Any]
) -> None:
    x, y = load_samples()
    assert y is not None
    n = 60
    correct = 0
    for i in range(n):
        reply = greeted.request(digits_task(x[i : i + 1]))
        assert reply["t"] == "result", reply
        assert set(reply["outputs"]) == {"label", "probabilities"}
        assert digest_tensors(reply["outputs"]) == reply["digest"]
        assert isinstance(reply["took_us"], int) and reply["took_us"] >= 0
        label = reply["outputs"]["label"]
        assert label["dtype"] == "int64" and label["shape"] == [1]
        probs = reply["outputs"]["probabilities"]
        assert probs["dtype"] == "float32" and probs["shape"] == [1, 10]
        p = np.frombuffer(probs["data"], "<f4")
        assert abs(float(p.sum()) - 1.0) < 1e-3
        predicted = int(np.frombuffer(label["data"], "<i8")[0])
        assert predicted == int(np.argmax(p))
        correct += predicted == int(y[i])
    assert correct >= 0.9 * n, f"only {correct}/{n} correct"

    # A batch in one task (the first dimension is -1: any size).
    batch = greeted.request(digits_task(x[:25]))
    assert batch["t"] == "result", batch
    assert batch["outputs"]["label"]["shape"] == [25]
    labels = np.frombuffer(batch["outputs"]["label"]["data"], "<i8")
    assert int((labels == y[:25]).sum()) >= 22

    # Unknown keys are ignored; a task's payload cannot name its requester.
    reply = greeted.request(digits_task(x[:1], requester="0" * 20, sender="0" * 20, extra=[1]))
    assert reply["t"] == "result"
    node.wait_for("task_served", lambda e: e["ok"], timeout=10, count=n + 2)
    served = node.snapshot("task_served")
    assert {e["requester"] for e in served} == {greeted.peer_id}
    assert_serving(node, raw_client)


def test_model_get(node: Any, greeted: Any, raw_client: Callable[..., Any]) -> None:
    blob = DIGITS_ONNX.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    chunk = greeted.request(
        {"t": "model_get", "name": "digits", "sha256": sha, "offset": 100, "length": 1000}
    )
    assert chunk["t"] == "model_chunk", chunk
    assert chunk["sha256"] == sha and chunk["offset"] == 100 and chunk["total"] == len(blob)
    assert chunk["data"] == blob[100:1100]
    rid = new_id()
    greeted.send({"t": "model_get", "id": rid, "name": "digits", "sha256": sha, "offset": 0,
                  "length": 1024 * 1024 + 1})  # fmt: skip
    assert_error(greeted.recv(), "too_large", rid)
    rid = new_id()
    greeted.send({"t": "model_get", "id": rid, "name": "digits", "sha256": "f" * 64,
                  "offset": 0, "length": 10})  # fmt: skip
    assert_error(greeted.recv(), "unknown_model", rid)
    rid = new_id()
    greeted.send({"t": "model_get", "id": rid, "name": "digits", "sha256": sha, "offset": -1,
                  "length": 10})  # fmt: skip
    assert_error(greeted.recv(), "bad_request", rid)
    # Offsets past the end, even past what lseek or a C long takes: exactly one reply each,
    # an empty chunk (a peer's bad offset is not the node's `internal` failure).
    for offset in (len(blob), len(blob) + 10, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1):
        rid = new_id()
        greeted.send({"t": "model_get", "id": rid, "name": "digits", "sha256": sha,
                      "offset": offset, "length": 10})  # fmt: skip
        reply = greeted.recv()
        assert reply is not None, f"no reply to model_get at offset {offset}"
        assert reply["id"] == rid
        assert reply["t"] == "model_chunk", (offset, reply)
        assert reply["data"] == b"" and reply["total"] == len(blob)
    greeted.expect_silence()
    assert_serving(node, raw_client)


def test_cancel_and_flood(start_node: Callable[..., Any], raw_client: Callable[..., Any]) -> None:
    """Every task gets exactly one reply; a cancel turns a pending task's reply into
    `cancelled`, even right behind it in a burst; only the requester's own key cancels."""
    node = start_node("slow", "--capacity", "1", "--queue-limit", "3")
    a = raw_client(node)
    b = raw_client(node)
    assert a.hello(node.network)["t"] == "hello"
    assert b.hello(node.network)["t"] == "hello"
    x = load_samples()[0]
    # Big enough to run in the worker's thread (not inline), so tasks really wait their turn.
    big = np.ascontiguousarray(np.resize(x, (20000, 64)))
    ids = [new_id() for _ in range(4)]
    for rid in ids:
        a.send(digits_task(big, id=rid, timeout_ms=60000))
    for rid in ids:  # another key cancelling a's tasks: no effect
        b.send({"t": "cancel", "id": rid})
    for rid in ids[2:]:  # a cancels its last two, in the same burst
        a.send({"t": "cancel", "id": rid})
    replies: dict[bytes, list[dict[str, Any]]] = {}

    def collect(count: int) -> None:
        deadline = time.monotonic() + 30
        while len(replies) < count and time.monotonic() < deadline:
            msg = a.recv(5)
            if msg is None:
                break
            replies.setdefault(msg["id"], []).append(msg)

    collect(len(ids))
    a.expect_silence(0.3)
    b.expect_silence(0.1)
    assert set(replies) == set(ids), "a task got no reply"
    assert all(len(r) == 1 for r in replies.values()), "a task got two replies"
    got = [replies[rid][0] for rid in ids]
    assert [r["t"] for r in got[:2]] == ["result", "result"], got[:2]
    for reply in got[2:]:
        assert_error(reply, "cancelled", reply["id"])
    node.wait_for("task_served", lambda e: e["error"] == "cancelled", timeout=5, count=2)

    # A flood far past capacity + queue limit: exactly one reply each, a result or
    # `overloaded` (refused at once, to go elsewhere), never silence.
    replies.clear()
    flood = [new_id() for _ in range(300)]
    for rid in flood:
        a.send(digits_task(x[:1], id=rid))
    collect(len(flood))
    a.expect_silence(0.3)
    assert set(replies) == set(flood), f"{len(set(flood) - set(replies))} tasks got no reply"
    assert all(len(r) == 1 for r in replies.values()), "a task got two replies"
    codes = [replies[rid][0].get("code", replies[rid][0]["t"]) for rid in flood]
    assert set(codes) <= {"overloaded", "result"}, set(codes)
    print(f"\nflood of 300 at capacity 1, queue 3: {codes.count('overloaded')} overloaded")
    assert_serving(node, raw_client)


# --- framing -------------------------------------------------------------------------------


def test_multi_frame_message(node: Any, greeted: Any, raw_client: Callable[..., Any]) -> None:
    ping = pack({"v": 1, "t": "ping", "id": new_id(), "ts": 1.0})
    for frames in ([ping, ping], [b"", ping], [ping, b""], [b"a", b"b", b"c"]):
        greeted.send_frames(frames)
        assert_error(greeted.recv(), "bad_request")
    greeted.expect_silence()
    assert greeted.ping()["t"] == "pong"
    assert_serving(node, raw_client)


def padded_ping(size: int) -> tuple[bytes, bytes]:
    """A valid ping of exactly ``size`` bytes (an unknown `pad` key, which must be ignored)."""
    rid = new_id()
    base = len(pack({"v": 1, "t": "ping", "id": rid, "ts": 1.0, "pad": b""}))
    frame = pack({"v": 1, "t": "ping", "id": rid, "ts": 1.0, "pad": b"p" * (size - base - 3)})
    assert len(frame) == size
    return rid, frame


def assert_reconnected_ungreeted(client: Any) -> None:
    """The node's side of ``client``'s connection was closed: its DEALER reconnected silently,
    and the new connection is not greeted."""
    deadline = time.monotonic() + 10
    reply = None
    while reply is None and time.monotonic() < deadline:
        rid = new_id()
        client.send({"t": "ping", "id": rid, "ts": 1.0})
        reply = client.recv_for(rid, 1.0)
    assert_error(reply, "hello_required", rid)


def test_frame_size_limit(node: Any, greeted: Any, raw_client: Callable[..., Any]) -> None:
    other = raw_client(node)
    assert other.hello(node.network)["t"] == "hello"
    # Exactly 16 MiB is still a frame: it is read and answered (CURVE's own framing bytes
    # must not eat into the limit).
    rid, frame = padded_ping(MAX_FRAME)
    greeted.send_raw(frame)
    pong = greeted.recv_for(rid, 10)
    assert pong is not None and pong["t"] == "pong", "a 16 MiB frame was refused"
    greeted.send_raw(b"\xc1" * MAX_FRAME)
    assert_error(greeted.recv(10), "bad_request")
    # One byte more, or far more: ZeroMQ closes that connection, no reply. The other
    # connection never notices; a fresh one is served.
    for size in (MAX_FRAME + 1, MAX_FRAME + 1024 * 1024):
        rid, frame = padded_ping(size)
        greeted.send_raw(frame)
        greeted.expect_silence(1.0)
        assert_reconnected_ungreeted(greeted)
        assert greeted.hello(node.network)["t"] == "hello"
        assert other.ping()["t"] == "pong"
    fresh = raw_client(node)
    assert fresh.hello(node.network)["t"] == "hello"
    assert fresh.ping()["t"] == "pong"
    assert node.rss_bytes() < 400 * 2**20
    assert_serving(node, raw_client)


# --- messages that never get a reply -------------------------------------------------------


def test_notices_get_no_reply(node: Any, client: Any, raw_client: Callable[..., Any]) -> None:
    junk = [
        {"t": "cancel"},
        {"t": "cancel", "id": b"short"},
        {"t": "cancel", "id": new_id()},  # well-formed, unknown task
        {"t": "pong"},
        {"t": "pong", "id": new_id(), "ts": "now"},
        {"t": "pong", "id": new_id(), "ts": 1.0, "inflight": "x"},
        {"t": "result", "id": new_id()},
        {"t": "result", "id": new_id(), "outputs": {"x": "y"}, "digest": b"1" * 32, "took_us": 1},
        {"t": "result", "id": new_id(), "outputs": {}, "digest": b"1" * 31, "took_us": 1},
        {"t": "error"},
        {"t": "error", "id": new_id(), "code": 5, "message": None},
        {"t": "error", "id": new_id(), "code": "bad_request", "message": "well-formed"},
        {"t": "model_chunk", "id": new_id()},
        {"t": "model_chunk", "id": new_id(), "sha256": "0" * 64, "offset": 0, "data": b"x",
         "total": 1},
    ]  # fmt: skip
    # Before hello (no hello_required for them either), then on a greeted connection.
    for greeted_yet in (False, True):
        if greeted_yet:
            assert client.hello(node.network)["t"] == "hello"
        for msg in junk:
            client.send(msg)
        client.expect_silence(0.5)
        if greeted_yet:
            assert client.ping()["t"] == "pong"
    node.wait_for("peer_up", lambda e: e["peer_id"] == client.peer_id, timeout=5)
    # `bye`, with junk fields that must be ignored: no reply; it ungreets the connection and
    # drops this peer at once.
    client.send({"t": "bye", "id": 7, "reason": ["x"]})
    client.expect_silence(0.5)
    down = node.wait_for("peer_down", lambda e: e["peer_id"] == client.peer_id, timeout=5)
    assert down["reason"] == "bye"
    rid = new_id()
    client.send({"t": "ping", "id": rid, "ts": 1.0})
    assert_error(client.recv(), "hello_required", rid)
    assert_serving(node, raw_client)


# --- identity ------------------------------------------------------------------------------


def test_routing_id_cannot_hijack_a_connection(node: Any, raw_client: Callable[..., Any]) -> None:
    rid_bytes = b"victim-routing-id"
    first = raw_client(node, routing_id=rid_bytes)
    assert first.hello(node.network)["t"] == "hello"
    assert first.ping()["t"] == "pong"
    second = raw_client(node, routing_id=rid_bytes)
    second.send({"t": "ping", "id": new_id(), "ts": 1.0})
    second.send(digits_task())
    # ZeroMQ refuses a duplicate routing id: nothing reaches the node, nothing comes back.
    second.expect_silence(1.0)
    for _ in range(3):
        assert first.ping()["t"] == "pong"
        second.expect_silence(0.1)
    assert first.request(digits_task())["t"] == "result"
    second.expect_silence(0.3)

    # Once the first leaves, a newcomer reusing its routing id does not inherit its greeting.
    first.close()
    reply = None
    for _ in range(20):
        late = raw_client(node, routing_id=rid_bytes)
        rid = new_id()
        late.send({"t": "ping", "id": rid, "ts": 1.0})
        reply = late.recv(0.5)
        late.close()
        if reply is not None:
            break
    assert_error(reply, "hello_required", rid)
    assert_serving(node, raw_client)


def test_identity_is_the_curve_key(node: Any, raw_client: Callable[..., Any]) -> None:
    a = raw_client(node)
    b = raw_client(node)
    forged = {"peer_id": node.peer_id, "key": node.key, "from": b.peer_id, "sender": b.peer_id,
              "user_id": node.key}  # fmt: skip
    assert a.hello(node.network, name="impostor", **forged)["t"] == "hello"
    up = node.wait_for("peer_up", lambda e: e["name"] == "impostor", timeout=5)
    assert up["source"] == "hello"
    assert up["peer_id"] == a.peer_id
    assert up["peer_id"] == hashlib.sha256(zmq.utils.z85.decode(a.public)).hexdigest()[:20]
    assert b.hello(node.network, name="impostor", **forged)["t"] == "hello"
    up_b = node.wait_for("peer_up", lambda e: e["peer_id"] == b.peer_id, timeout=5)
    assert up_b["peer_id"] != a.peer_id
    reply = a.request(digits_task(**forged))
    assert reply["t"] == "result"
    served = node.wait_for("task_served", lambda e: e["ok"], timeout=5)
    assert served["requester"] == a.peer_id
    # Every peer the node announced is the hash of a key that authenticated a connection.
    assert {e["peer_id"] for e in node.snapshot("peer_up")} == {a.peer_id, b.peer_id}
    # A forged bye from b does not drop a.
    b.send({"t": "bye", **forged, "peer_id": a.peer_id})
    node.wait_for("peer_down", lambda e: e["peer_id"] == b.peer_id, timeout=5)
    assert a.ping()["t"] == "pong"
    assert node.count("peer_down", lambda e: e["peer_id"] == a.peer_id) == 0
    assert_serving(node, raw_client)


def test_hello_endpoints_that_cannot_be_dialled(node: Any, raw_client: Callable[..., Any]) -> None:
    """Endpoints a peer advertises are dialled back; broken ones must not break the node.
    (Loopback only: this test never makes the node dial anywhere else.)"""
    for endpoints in (
        ["tcp://127.0.0.1:notaport"],
        ["tcp://127.0.0.1"],
        ["127.0.0.1:1"],
        ["tcp://127.0.0.1:99999"],
        ["tcp://127.0.0.1:-5"],
        ["tcp://[::1]:1"],
        ["ipc:///tmp/x"],
        ["", "tcp://", "tcp://:1", "tcp://localhost:1"],
    ):
        c = raw_client(node)
        reply = c.hello(node.network, name="dial-me", endpoints=endpoints)
        assert reply["t"] in ("hello", "error"), reply
        if reply["t"] == "error":
            assert_error(reply, "bad_request", reply.get("id"))
        else:
            assert c.ping()["t"] == "pong"
    assert_serving(node, raw_client)


# --- mDNS ----------------------------------------------------------------------------------


def curve_router(zctx: Any, keypair: tuple[bytes, bytes]) -> tuple[Any, int]:
    """A CURVE ROUTER of ours on 127.0.0.1 (no ZAP handler: any client key may connect)."""
    router = zctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.CURVE_SERVER, 1)
    router.setsockopt(zmq.CURVE_PUBLICKEY, keypair[0])
    router.setsockopt(zmq.CURVE_SECRETKEY, keypair[1])
    return router, router.bind_to_random_port(f"tcp://{LOOPBACK}")


def test_garbage_mdns_records(node: Any, raw_client: Callable[..., Any], zctx: Any) -> None:
    from zeroconf import IPVersion, ServiceInfo, Zeroconf

    stype = "_p2pai._tcp.local."
    net = node.network.encode()

    def txt(pub: bytes) -> dict[bytes, bytes | None]:
        return {b"v": b"1", b"id": peer_id_of(pub).encode(), b"key": pub, b"net": net,
                b"name": b"x", b"caps": b"infer"}  # fmt: skip

    # Each record points at a CURVE ROUTER of ours holding the secret of the key the record
    # names, so a node that wrongly accepted a record would complete the handshake and greet
    # us there. The control record is valid: it shows the node acts on this Zeroconf's records.
    keypairs = [zmq.curve_keypair() for _ in range(9)]
    routers = [curve_router(zctx, kp) for kp in keypairs]
    (c_pub, _), (control, c_port) = keypairs[0], routers[0]
    c_id = peer_id_of(c_pub)
    k = [kp[0] for kp in keypairs]
    bad: list[tuple[int, dict[bytes, bytes | None]]] = [
        (1, {**txt(k[1]), b"v": b"2"}),
        (2, {key: v for key, v in txt(k[2]).items() if key != b"v"}),
        (3, {**txt(k[3]), b"id": peer_id_of(k[4]).encode()}),  # id is another key's hash
        (3, {**txt(k[3]), b"id": b"0" * 20}),
        (3, {**txt(k[3]), b"key": b"not a z85 key!"}),
        (3, {**txt(k[3]), b"key": b"~" * 40}),
        (4, {**txt(k[4]), b"key": b"\xff\xfe" * 20}),
        (4, {**txt(k[4]), b"id": b"\xc3\x28" * 10}),
        (5, {**txt(k[5]), b"net": b"\xff" + net}),
        (5, {**txt(k[5]), b"net": net + b"-other"}),
        (5, {**txt(k[5]), b"net": None}),
        (6, {key: v for key, v in txt(k[6]).items() if key != b"caps"}),
        (7, {**txt(k[7]), b"name": b"n" * 64}),
        (7, {**txt(k[7]), b"name": b"\x80\x81"}),
        (8, {**txt(k[8]), b"v": None, b"key": None}),
        (8, {b"\xff\xfe": b"\x00" * 200, b"v": b"1"}),
    ]
    bad_ids = {peer_id_of(pub) for pub in k[1:]} | {"0" * 20}

    zc = Zeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
    try:
        records = [(f"bad{i}-{os.urandom(3).hex()}", r, p) for i, (r, p) in enumerate(bad)]
        records.append((c_id, 0, txt(c_pub)))  # the control record, registered last
        infos = []
        t_reg = time.monotonic()
        for instance, router_index, props in records:
            info = ServiceInfo(
                stype,
                f"{instance}.{stype}",
                addresses=[socket.inet_aton(LOOPBACK)],
                port=routers[router_index][1],
                properties=props,
                server=f"{instance}.local.",
            )
            # Register without waiting for the ~0.5 s of repeated announcements of each.
            registering = asyncio.run_coroutine_threadsafe(
                zc.async_register_service(info, cooperating_responders=True, strict=False),
                zc.loop,
            )
            registering.result(5)
            infos.append(info)
        # The node dials the control record's endpoint and greets us there.
        hello = None
        deadline = time.monotonic() + 15
        while hello is None and time.monotonic() < deadline:
            if control.poll(500):
                frames = control.recv_multipart()
                msg = msgpack.unpackb(frames[-1], raw=False)
                if isinstance(msg, dict) and msg.get("t") == "hello":
                    hello = msg
        assert hello is not None, f"the node never dialled the control record: {node.describe()}"
        assert hello["net"] == node.network
        print(f"\ncontrol hello {time.monotonic() - t_reg:.2f}s after registering")
        # Answer it: the node announces the control peer, learnt from our record.
        control.send_multipart([frames[0], pack(
            {"v": 1, "t": "hello", "id": hello["id"], "name": "control", "net": node.network,
             "caps": ["infer"], "endpoints": [f"tcp://{LOOPBACK}:{c_port}"], "models": [],
             "accel": [], "capacity": 1}
        )])  # fmt: skip
        up = node.wait_for("peer_up", lambda e: e["peer_id"] == c_id, timeout=5)
        assert up["source"] == "mdns" and up["name"] == "control"
        assert_serving(node, raw_client)
        # No bad record was dialled (a dial would have completed its handshake and said hello).
        for index, (router, _) in enumerate(routers[1:], 1):
            if router.poll(200):
                got = msgpack.unpackb(router.recv_multipart()[-1], raw=False)
                raise AssertionError(f"the node dialled bad record(s) with key {index}: {got}")
        announced = {e["peer_id"] for e in node.snapshot("peer_up")}
        assert not announced & bad_ids, f"garbage records announced: {announced & bad_ids}"
        assert not any(e["name"] in ("x", "n" * 63) for e in node.snapshot("peer_up"))
        # The goodbye of the control record: the node pings it over CURVE; our router never
        # answers, so the goodbye is confirmed and the peer dropped (netcore.net.hints).
        zc.unregister_service(infos[-1])
        down = node.wait_for("peer_down", lambda e: e["peer_id"] == c_id, timeout=15)
        assert down["reason"] == "goodbye"
    finally:
        zc.unregister_all_services()
        zc.close()
        for router, _ in routers:
            router.close(linger=0)
    assert node.alive()
    assert_serving(node, raw_client)


# --- start-up failures ---------------------------------------------------------------------


def one_line_error(node: Any) -> str:
    code = node.wait_exit(20)
    assert code is not None, "the node did not exit"
    assert code != 0
    err = node.stderr()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("p2pai: error: "), lines[0]
    assert node.snapshot("ready") == []
    event = node.wait_for("error", timeout=1)  # --json also reports it on stdout
    assert event["message"] in lines[0]
    return lines[0]


def test_port_in_use(node: Any, start_node: Callable[..., Any]) -> None:
    started = time.monotonic()
    second = start_node("second", "--port", str(node.port), wait_ready=False)
    line = one_line_error(second)
    assert str(node.port) in line and "in use" in line, line
    assert time.monotonic() - started < 15
    assert node.alive()


def test_data_dir_is_a_regular_file(start_node: Callable[..., Any], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("I am a file")
    bad = start_node("filedir", data_dir=blocker, wait_ready=False)
    line = one_line_error(bad)
    assert str(blocker) in line, line
    assert blocker.read_text() == "I am a file"


def test_corrupt_or_exposed_key_file(start_node: Callable[..., Any], tmp_path: Path) -> None:
    data = tmp_path / "corrupt"
    data.mkdir()
    secret = data / "identity.key_secret"
    secret.write_bytes(b'\x00garbage\xff\npublic-key = "nope"\n')
    secret.chmod(0o600)
    line = one_line_error(start_node("corrupt", data_dir=data, wait_ready=False))
    assert str(secret) in line and "corrupt" in line, line
    assert secret.read_bytes().startswith(b"\x00garbage"), "a damaged key is never overwritten"

    # A valid key whose file others can read is refused too, with the fix.
    data2 = tmp_path / "exposed"
    good = start_node("good", data_dir=data2)
    assert good.stop() == 0
    secret2 = data2 / "identity.key_secret"
    assert stat.S_IMODE(secret2.stat().st_mode) == 0o600
    secret2.chmod(0o644)
    line = one_line_error(start_node("exposed", data_dir=data2, wait_ready=False))
    assert str(secret2) in line and "chmod 600" in line, line


# --- fuzz ----------------------------------------------------------------------------------


def fuzz_frames(count: int, seed: int = 20240601) -> Iterator[bytes]:
    """Random and mutated frames; never a hello (its endpoints would make the node dial)."""
    rng = random.Random(seed)
    x = load_samples()[0][:2]
    templates = [
        {"v": 1, "t": "ping", "id": b"\x01" * 16, "ts": 1.5},
        {"v": 1, "t": "task", "id": b"\x02" * 16, "kind": "infer", "model": "digits",
         "inputs": {"input": tensor(x[:1])}, "timeout_ms": 1000},
        {"v": 1, "t": "task", "id": b"\x03" * 16, "kind": "infer", "model": "digits",
         "inputs": {"input": tensor(x)}, "timeout_ms": 50.5, "sha256": "e" * 64},
        {"v": 1, "t": "model_get", "id": b"\x04" * 16, "name": "digits", "sha256": "a" * 64,
         "offset": 0, "length": 100},
        {"v": 1, "t": "cancel", "id": b"\x02" * 16},
        {"v": 1, "t": "pong", "id": b"\x05" * 16, "ts": 1.0, "inflight": 0, "queued": 0},
        {"v": 1, "t": "result", "id": b"\x06" * 16, "outputs": {}, "digest": b"d" * 32,
         "took_us": 5},
        {"v": 1, "t": "error", "id": b"\x07" * 16, "code": "internal", "message": "m"},
        {"v": 1, "t": "gossip", "id": b"\x08" * 16},
    ]  # fmt: skip
    vocab = ["v", "t", "id", "ts", "kind", "model", "inputs", "timeout_ms", "dtype", "shape",
             "data", "sha256", "offset", "length", "name", "net", "code", "message"]  # fmt: skip
    types = ["ping", "task", "model_get", "cancel", "pong", "result", "error", "bye", "x"]

    def value(depth: int) -> Any:
        kind = rng.randrange(12)
        if kind == 0:
            return rng.randrange(-(2**63), 2**64)
        if kind == 1:
            return rng.choice([0.0, -1.0, float("inf"), float("nan"), 1e308, rng.random()])
        if kind == 2:
            return rng.randbytes(rng.choice([0, 1, 15, 16, 17, 32, 256]))
        if kind == 3:
            return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(20)))
        if kind == 4:
            return rng.choice(types)
        if kind == 5 and depth < 4:
            return [value(depth + 1) for _ in range(rng.randrange(5))]
        if kind == 6 and depth < 4:
            return {rng.choice(vocab): value(depth + 1) for _ in range(rng.randrange(6))}
        if kind == 7:
            return {"dtype": rng.choice(["float32", "int64", "bool", "float16", "uint8", "?"]),
                    "shape": [rng.randrange(-2, 70) for _ in range(rng.randrange(4))],
                    "data": rng.randbytes(rng.randrange(0, 600))}  # fmt: skip
        return rng.choice([None, True, False, 1, "digits", b"\x00" * 16])

    made = 0
    while made < count:
        roll = rng.random()
        if roll < 0.15:
            frame = rng.randbytes(rng.randrange(0, 300))
        elif roll < 0.55:
            frame = bytearray(pack(rng.choice(templates)))
            for _ in range(rng.randrange(1, 6)):
                op = rng.randrange(4)
                pos = rng.randrange(len(frame) + 1)
                if op == 0 and frame:
                    frame[min(pos, len(frame) - 1)] = rng.randrange(256)
                elif op == 1:
                    del frame[pos:]
                elif op == 2:
                    frame[pos:pos] = rng.randbytes(rng.randrange(1, 9))
                elif frame:
                    frame[pos:pos] = frame[: rng.randrange(1, len(frame) + 1)]
            frame = bytes(frame)
        else:
            msg = {rng.choice(vocab): value(0) for _ in range(rng.randrange(8))}
            if rng.random() < 0.8:
                msg["t"] = rng.choice(types)
            if rng.random() < 0.8:
                msg["v"] = 1
            if rng.random() < 0.7:
                msg["id"] = rng.randbytes(16)
            frame = pack(msg)
        try:
            decoded = msgpack.unpackb(frame, raw=False, strict_map_key=True)
        except Exception:
            decoded = None
        if isinstance(decoded, dict) and decoded.get("t") in ("hello", "bye"):
            continue  # hello could make the node dial; bye would only ungreet us
        made += 1
        yield frame


FUZZ_FRAMES = 20_000


def test_fuzz_burst(node: Any, greeted: Any, raw_client: Callable[..., Any]) -> None:
    frames = list(fuzz_frames(FUZZ_FRAMES))
    assert len(frames) == FUZZ_FRAMES
    assert greeted.ping()["t"] == "pong"
    rss_before = node.rss_bytes()
    replies: list[dict[str, Any]] = []
    started = time.monotonic()

    def drain(timeout: float) -> bool:
        msg = greeted.recv(timeout)
        if msg is not None:
            replies.append(msg)
        return msg is not None

    for i, frame in enumerate(frames):
        greeted.send_raw(frame)
        while drain(0):
            pass
        if i % 2000 == 1999:
            assert node.alive(), f"node died after {i + 1} fuzz frames: {node.describe()}"
    while time.monotonic() - started < 120 and drain(1.0):
        pass
    took = time.monotonic() - started
    print(f"\nfuzz: {len(frames)} frames, {len(replies)} replies in {took:.2f}s")
    assert took < 120
    assert node.alive(), node.describe()
    assert 0 < len(replies) <= len(frames)
    for reply in replies:
        assert reply.get("v") == 1, reply
        assert reply["t"] in ("error", "pong", "result", "model_chunk"), reply
        if reply["t"] == "error":
            assert reply["code"] in ERROR_CODES, reply
            assert isinstance(reply["message"], str) and "\n" not in reply["message"]
    rss = node.rss_bytes()
    print(f"fuzz: node RSS {rss_before / 2**20:.1f} -> {rss / 2**20:.1f} MiB")
    assert rss < 400 * 2**20
    # Bounded: every per-connection and per-task table has a cap (no leak per message).
    assert rss - rss_before < 64 * 2**20
    # The fuzzed connection itself still works, and so does a fresh one.
    assert greeted.hello(node.network)["t"] == "hello"
    assert greeted.ping()["t"] == "pong"
    assert_serving(node, raw_client)
