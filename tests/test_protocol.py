"""Unit tests for the wire codec (PROTOCOL.md §4): messages, check order, tensors, digest."""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from netcore.wire import protocol
from netcore.wire.protocol import ProtocolError

RID = bytes(range(16))
OTHER_RID = bytes(range(16, 32))

# The dtypes PROTOCOL.md §4.1 lets a peer send (numpy dtype names), written out here rather
# than imported so that the test notices if the codec's list shrinks.
WIRE_DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
]

MODEL_ENTRY: dict[str, Any] = {
    "name": "digits",
    "sha256": "ab" * 32,
    "size": 21171,
    "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 64]}],
    "outputs": [{"name": "label", "dtype": "int64"}, {"name": "probabilities", "dtype": "float32"}],
    "label_output": "label",
}


def _tensor(arr: np.ndarray) -> dict[str, Any]:
    """A wire tensor built by hand (not by the codec under test)."""
    le = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"))
    return {"dtype": arr.dtype.name, "shape": list(arr.shape), "data": le.tobytes()}


INPUT = _tensor(np.arange(64, dtype=np.float32).reshape(1, 64))
LABEL = _tensor(np.array([7], dtype=np.int64))
PROBS = _tensor(np.full((1, 10), 0.1, dtype=np.float32))


def _hello(**over: Any) -> dict[str, Any]:
    msg = {
        "t": "hello",
        "id": RID,
        "name": "node-a",
        "net": "default",
        "caps": ["infer"],
        "endpoints": ["tcp://127.0.0.1:5555"],
        "models": [MODEL_ENTRY],
        "accel": ["cpu"],
        "capacity": 4,
    }
    msg.update(over)
    return msg


# One valid example of every message type in §4 (and a few variants).
VALID_MESSAGES: dict[str, dict[str, Any]] = {
    "hello": _hello(),
    "hello-client-only": _hello(caps=[], endpoints=[], models=[], capacity=0),
    "hello-minimal": {
        "t": "hello",
        "id": RID,
        "name": "n",
        "net": "lab",
        "caps": [],
        "endpoints": [],
        "models": [],
    },
    "ping": {"t": "ping", "id": RID, "ts": 12345.678},
    "ping-int-ts": {"t": "ping", "id": RID, "ts": 12},
    "pong": {"t": "pong", "id": RID, "ts": 12345.678, "inflight": 2, "queued": 0, "capacity": 4},
    "task": {
        "t": "task",
        "id": RID,
        "kind": "infer",
        "model": "digits",
        "sha256": "ab" * 32,
        "inputs": {"input": INPUT},
        "timeout_ms": 5000,
    },
    "task-no-pin": {
        "t": "task",
        "id": RID,
        "kind": "infer",
        "model": "digits",
        "inputs": {"input": INPUT},
        "timeout_ms": 2.5,
    },
    "result": {
        "t": "result",
        "id": RID,
        "outputs": {"label": LABEL, "probabilities": PROBS},
        "digest": b"\x01" * 32,
        "took_us": 9,
    },
    "error": {"t": "error", "id": RID, "code": "overloaded", "message": "queue full"},
    "error-no-id": {"t": "error", "code": "bad_request", "message": "not msgpack"},
    "model_get": {
        "t": "model_get",
        "id": RID,
        "name": "digits",
        "sha256": "ab" * 32,
        "offset": 0,
        "length": 1024 * 1024,
    },
    "model_chunk": {
        "t": "model_chunk",
        "id": RID,
        "sha256": "ab" * 32,
        "offset": 4096,
        "data": b"\x00\x01onnx",
        "total": 21171,
    },
    "cancel": {"t": "cancel", "id": RID},
    "bye": {"t": "bye"},
    "punch": {"t": "punch", "id": RID, "addr": "198.51.100.7:40123", "token": b"\x07" * 16},
    "punch_ok": {"t": "punch_ok", "id": RID, "addr": "[2001:db8::1]:40124"},
}


def _raw(obj: Any) -> bytes:
    """A frame packed directly with msgpack (no ``v`` added)."""
    return msgpack.packb(obj, use_bin_type=True)


def _decode_error(frame: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frame)
    return info.value


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("label", sorted(VALID_MESSAGES))
def test_every_message_type_round_trips(label: str) -> None:
    msg = VALID_MESSAGES[label]
    frame = protocol.encode(msg)
    assert isinstance(frame, bytes)
    decoded = protocol.decode(frame)
    assert decoded == {"v": 1, **msg}
    # The frame is a plain msgpack map with str keys, bin for bytes and v = 1.
    raw = msgpack.unpackb(frame, raw=False)
    assert raw["v"] == 1
    assert raw["t"] == msg["t"]
    if "id" in msg:
        assert isinstance(raw["id"], bytes) and raw["id"] == RID


def test_every_type_of_the_spec_has_an_example() -> None:
    types = {m["t"] for m in VALID_MESSAGES.values()}
    assert types == {
        "hello",
        "ping",
        "pong",
        "task",
        "result",
        "error",
        "model_get",
        "model_chunk",
        "cancel",
        "bye",
        "punch",
        "punch_ok",
    }
    assert types == protocol.KNOWN_TYPES


def test_bytes_are_sent_as_bin_and_text_as_str() -> None:
    frame = protocol.encode(VALID_MESSAGES["model_chunk"])
    raw = msgpack.unpackb(frame, raw=True)  # raw=True keeps str as bytes: compare the types
    assert raw[b"t"] == b"model_chunk"
    # With raw=False a msgpack str would decode to str and a bin to bytes.
    decoded = msgpack.unpackb(frame, raw=False)
    assert isinstance(decoded["data"], bytes)
    assert isinstance(decoded["sha256"], str)


def test_encode_keeps_an_explicit_version() -> None:
    frame = protocol.encode({"v": 1, "t": "bye"})
    assert msgpack.unpackb(frame) == {"v": 1, "t": "bye"}
    assert protocol.decode(protocol.encode({"t": "bye"})) == {"v": 1, "t": "bye"}


def test_decode_accepts_memoryview() -> None:
    frame = protocol.encode(VALID_MESSAGES["ping"])
    assert protocol.decode(memoryview(frame)) == {"v": 1, **VALID_MESSAGES["ping"]}


@pytest.mark.parametrize("label", ["hello", "ping", "task", "result", "error", "cancel", "bye"])
def test_unknown_keys_are_ignored(label: str) -> None:
    msg = {**VALID_MESSAGES[label], "x-future": {"nested": [1, 2.5, b"z"]}, "zz": None}
    decoded = protocol.decode(protocol.encode(msg))
    assert decoded["t"] == msg["t"]


def test_unknown_keys_in_model_entries_and_tensors_are_ignored() -> None:
    entry = {**MODEL_ENTRY, "version": "1.0.0", "labels": ["0", "1"], "license": "MIT"}
    protocol.decode(protocol.encode(_hello(models=[entry])))
    task = {**VALID_MESSAGES["task"], "inputs": {"input": {**INPUT, "note": "hi"}}}
    protocol.decode(protocol.encode(task))


def test_new_id_is_16_random_bytes() -> None:
    ids = {protocol.new_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(isinstance(i, bytes) and len(i) == 16 for i in ids)


def test_error_builder_is_one_line_and_decodes() -> None:
    msg = protocol.error("internal", "first line\nsecond\tline   end", RID)
    assert msg["message"] == "first line second line end"
    decoded = protocol.decode(protocol.encode(msg))
    assert decoded["code"] == "internal"
    assert decoded["id"] == RID
    no_id = protocol.error("bad_request", "x")
    assert "id" not in no_id
    protocol.decode(protocol.encode(no_id))


def test_one_line_bounds_the_length() -> None:
    text = "word " * 500
    line = protocol.one_line(text, limit=50)
    assert len(line) == 50
    assert "\n" not in line
    assert protocol.one_line("short") == "short"


# --- check order (§4.1) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="reserved-byte"),
        pytest.param(b"\x82\xa1t", id="truncated-map"),
        pytest.param(_raw({"t": "bye", "v": 1}) + b"\x00", id="trailing-bytes"),
        pytest.param(_raw([1, "ping"]), id="array"),
        pytest.param(_raw("ping"), id="str"),
        pytest.param(_raw(1), id="int"),
        pytest.param(_raw(None), id="nil"),
        pytest.param(_raw(b"\x00" * 16), id="bin"),
        pytest.param(_raw({1: "ping"}), id="int-key"),
        pytest.param(b"\x81\x01\xa4ping", id="int-key-raw"),
        pytest.param(_raw({"v": 1}), id="no-t"),
        pytest.param(_raw({"v": 1, "t": 5}), id="int-t"),
        pytest.param(_raw({"v": 1, "t": b"ping"}), id="bin-t"),
        pytest.param(_raw({"v": 1, "t": None}), id="nil-t"),
    ],
)
def test_not_a_map_or_no_str_t_is_bad_request(frame: bytes) -> None:
    err = _decode_error(frame)
    assert err.code == "bad_request"
    assert err.req_id is None


@pytest.mark.parametrize(
    "msg",
    [
        pytest.param({"v": 1, "id": RID}, id="no-t"),
        pytest.param({"v": 1, "id": RID, "t": 7}, id="int-t"),
        pytest.param({"v": 1, "id": RID, "t": ["ping"]}, id="list-t"),
        # t is checked before v: a bad t wins over a bad v.
        pytest.param({"v": 2, "id": RID}, id="no-t-and-v2"),
        pytest.param({"id": RID, "t": b"task"}, id="bin-t-no-v"),
    ],
)
def test_bad_request_echoes_a_16_byte_id(msg: dict[str, Any]) -> None:
    err = _decode_error(_raw(msg))
    assert err.code == "bad_request"
    assert err.req_id == RID


@pytest.mark.parametrize(
    "bad_id",
    [b"", b"\x00" * 15, b"\x00" * 17, "0123456789abcdef", 16, None, [1] * 16],
)
def test_bad_request_does_not_echo_an_id_that_is_not_16_bytes(bad_id: Any) -> None:
    err = _decode_error(_raw({"v": 1, "id": bad_id}))
    assert err.code == "bad_request"
    assert err.req_id is None


@pytest.mark.parametrize(
    "version",
    [
        pytest.param(None, id="missing"),
        pytest.param(0, id="0"),
        pytest.param(2, id="2"),
        pytest.param(-1, id="-1"),
        pytest.param("1", id="str"),
        pytest.param(b"\x01", id="bin"),
        pytest.param(True, id="true"),
        pytest.param(1.0, id="float"),
        pytest.param([1], id="list"),
        pytest.param(2**64 - 1, id="u64max"),
    ],
)
def test_version_other_than_1_is_unsupported(version: Any) -> None:
    msg: dict[str, Any] = {"t": "ping", "id": RID, "ts": 1.0}
    if version is not None:
        msg["v"] = version
    err = _decode_error(_raw(msg))
    assert err.code == "unsupported"
    assert err.req_id == RID


@pytest.mark.parametrize("t", ["frobnicate", "", "Ping", "hello ", "x" * 10_000])
def test_unknown_type_is_unsupported(t: str) -> None:
    err = _decode_error(_raw({"v": 1, "t": t, "id": RID}))
    assert err.code == "unsupported"
    assert err.req_id == RID
    assert len(err.message) < 200


def test_unsupported_without_a_valid_id_echoes_nothing() -> None:
    err = _decode_error(_raw({"v": 9, "t": "ping", "id": b"short"}))
    assert err.code == "unsupported"
    assert err.req_id is None


@pytest.mark.parametrize(
    "msg",
    [
        pytest.param({"v": 2, "t": "ping", "id": RID, "ts": "not a number"}, id="v2-bad-fields"),
        pytest.param({"v": 2, "t": "task", "id": b"x"}, id="v2-bad-id"),
        pytest.param({"v": 1, "t": "nope", "id": RID, "ts": "bad"}, id="unknown-t-bad-fields"),
        pytest.param({"t": "result", "id": RID, "outputs": 3}, id="no-v-bad-fields"),
    ],
)
def test_version_and_type_are_checked_before_fields(msg: dict[str, Any]) -> None:
    assert _decode_error(_raw(msg)).code == "unsupported"


def test_decode_envelope_checks_only_the_envelope() -> None:
    msg = protocol.decode_envelope(_raw({"v": 1, "t": "ping", "id": RID}))
    assert msg["t"] == "ping"
    with pytest.raises(ProtocolError) as info:
        protocol.validate(msg)
    assert info.value.code == "bad_request"
    assert info.value.req_id == RID


# --- field checks: bad_request -------------------------------------------------------------


def _without(msg: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if k != key}


def _with(label: str, **over: Any) -> dict[str, Any]:
    return {**VALID_MESSAGES[label], **over}


BAD_FIELDS: list[Any] = [
    # punch (a relayed peer's request for a simultaneous open)
    pytest.param({"t": "punch", "id": RID, "addr": "198.51.100.7:1"}, id="punch-no-token"),
    pytest.param(
        {"t": "punch", "id": RID, "addr": "198.51.100.7:1", "token": b"x" * 15},
        id="punch-short-token",
    ),
    pytest.param(
        {"t": "punch", "id": RID, "addr": "1" * 65, "token": b"x" * 16}, id="punch-long-addr"
    ),
    pytest.param({"t": "punch", "id": RID, "addr": 7, "token": b"x" * 16}, id="punch-int-addr"),
    pytest.param({"t": "punch_ok", "id": RID, "addr": b"198.51.100.7:1"}, id="punch_ok-bin-addr"),
    # hello
    pytest.param(_without(_hello(), "name"), id="hello-no-name"),
    pytest.param(_hello(name=b"bytes"), id="hello-bin-name"),
    pytest.param(_hello(net=1), id="hello-int-net"),
    pytest.param(_without(_hello(), "net"), id="hello-no-net"),
    pytest.param(_hello(caps="infer"), id="hello-str-caps"),
    pytest.param(_hello(caps=["infer", 1]), id="hello-int-cap"),
    pytest.param(_without(_hello(), "caps"), id="hello-no-caps"),
    pytest.param(_without(_hello(), "endpoints"), id="hello-no-endpoints"),
    pytest.param(_hello(endpoints=[b"tcp://x:1"]), id="hello-bin-endpoint"),
    pytest.param(_without(_hello(), "models"), id="hello-no-models"),
    pytest.param(_hello(models={"digits": MODEL_ENTRY}), id="hello-models-map"),
    pytest.param(_hello(models=["digits"]), id="hello-model-str"),
    pytest.param(_hello(models=[_without(MODEL_ENTRY, "name")]), id="hello-model-no-name"),
    pytest.param(_hello(models=[_without(MODEL_ENTRY, "sha256")]), id="hello-model-no-sha"),
    pytest.param(_hello(models=[{**MODEL_ENTRY, "size": True}]), id="hello-model-bool-size"),
    pytest.param(_hello(models=[{**MODEL_ENTRY, "size": "1"}]), id="hello-model-str-size"),
    pytest.param(_hello(models=[{**MODEL_ENTRY, "inputs": {}}]), id="hello-model-inputs-map"),
    pytest.param(
        _hello(models=[{**MODEL_ENTRY, "inputs": [{"dtype": "f"}]}]), id="hello-model-input-no-name"
    ),
    pytest.param(_hello(models=[{**MODEL_ENTRY, "outputs": [7]}]), id="hello-model-output-int"),
    pytest.param(_hello(accel="cpu"), id="hello-str-accel"),
    pytest.param(_hello(capacity="4"), id="hello-str-capacity"),
    pytest.param(_hello(capacity=True), id="hello-bool-capacity"),
    pytest.param(_hello(capacity=4.0), id="hello-float-capacity"),
    # ping / pong
    pytest.param(_without(VALID_MESSAGES["ping"], "ts"), id="ping-no-ts"),
    pytest.param(_with("ping", ts="now"), id="ping-str-ts"),
    pytest.param(_with("ping", ts=True), id="ping-bool-ts"),
    pytest.param(_without(VALID_MESSAGES["pong"], "ts"), id="pong-no-ts"),
    pytest.param(_with("pong", inflight="2"), id="pong-str-inflight"),
    pytest.param(_with("pong", capacity=1.5), id="pong-float-capacity"),
    pytest.param(_with("pong", queued=False), id="pong-bool-queued"),
    # task
    pytest.param(_without(VALID_MESSAGES["task"], "kind"), id="task-no-kind"),
    pytest.param(_with("task", kind=1), id="task-int-kind"),
    pytest.param(_without(VALID_MESSAGES["task"], "model"), id="task-no-model"),
    pytest.param(_with("task", model=b"digits"), id="task-bin-model"),
    pytest.param(_with("task", sha256=b"\xab" * 32), id="task-bin-sha"),
    pytest.param(_without(VALID_MESSAGES["task"], "timeout_ms"), id="task-no-timeout"),
    pytest.param(_with("task", timeout_ms=0), id="task-zero-timeout"),
    pytest.param(_with("task", timeout_ms=-5), id="task-negative-timeout"),
    pytest.param(_with("task", timeout_ms=float("nan")), id="task-nan-timeout"),
    pytest.param(_with("task", timeout_ms=True), id="task-bool-timeout"),
    pytest.param(_with("task", timeout_ms="5000"), id="task-str-timeout"),
    pytest.param(_without(VALID_MESSAGES["task"], "inputs"), id="task-no-inputs"),
    pytest.param(_with("task", inputs=[INPUT]), id="task-inputs-list"),
    pytest.param(
        _with("task", inputs={"input": {**INPUT, "dtype": "object"}}), id="task-object-dtype"
    ),
    pytest.param(
        _with("task", inputs={"input": {**INPUT, "shape": [1, 63]}}), id="task-bad-length"
    ),
    pytest.param(_with("task", inputs={b"input": INPUT}), id="task-bin-input-name"),
    # result
    pytest.param(_without(VALID_MESSAGES["result"], "outputs"), id="result-no-outputs"),
    pytest.param(
        _with("result", outputs={"label": {**LABEL, "data": b""}}), id="result-bad-tensor"
    ),
    pytest.param(_without(VALID_MESSAGES["result"], "digest"), id="result-no-digest"),
    pytest.param(_with("result", digest=b"\x01" * 31), id="result-short-digest"),
    pytest.param(_with("result", digest="01" * 32), id="result-hex-digest"),
    pytest.param(_without(VALID_MESSAGES["result"], "took_us"), id="result-no-took"),
    pytest.param(_with("result", took_us=1.5), id="result-float-took"),
    # error
    pytest.param(_without(VALID_MESSAGES["error"], "code"), id="error-no-code"),
    pytest.param(_with("error", code=3), id="error-int-code"),
    pytest.param(_without(VALID_MESSAGES["error"], "message"), id="error-no-message"),
    pytest.param(_with("error", message=None), id="error-nil-message"),
    # model_get / model_chunk
    pytest.param(_without(VALID_MESSAGES["model_get"], "name"), id="get-no-name"),
    pytest.param(_without(VALID_MESSAGES["model_get"], "sha256"), id="get-no-sha"),
    pytest.param(_with("model_get", offset=-1), id="get-negative-offset"),
    pytest.param(_with("model_get", length=-1), id="get-negative-length"),
    pytest.param(_with("model_get", length="1"), id="get-str-length"),
    pytest.param(_with("model_get", offset=0.0), id="get-float-offset"),
    pytest.param(_with("model_chunk", data="text"), id="chunk-str-data"),
    pytest.param(_without(VALID_MESSAGES["model_chunk"], "total"), id="chunk-no-total"),
    pytest.param(_with("model_chunk", offset="0"), id="chunk-str-offset"),
    pytest.param(_without(VALID_MESSAGES["model_chunk"], "sha256"), id="chunk-no-sha"),
]


@pytest.mark.parametrize("msg", BAD_FIELDS)
def test_bad_fields_are_bad_request_and_echo_the_id(msg: dict[str, Any]) -> None:
    err = _decode_error(protocol.encode(msg))
    assert err.code == "bad_request"
    assert err.req_id == RID, "a reply echoes the request's id when it carried 16 bytes"
    assert "\n" not in err.message


@pytest.mark.parametrize(
    "t", ["hello", "ping", "task", "model_get", "result", "model_chunk", "cancel", "pong"]
)
@pytest.mark.parametrize("bad_id", [None, b"\x00" * 15, "0" * 16, 16])
def test_messages_that_need_an_id_reject_a_missing_or_bad_one(t: str, bad_id: Any) -> None:
    base = next(m for m in VALID_MESSAGES.values() if m["t"] == t)
    msg = _without(base, "id")
    if bad_id is not None:
        msg["id"] = bad_id
    err = _decode_error(protocol.encode(msg))
    assert err.code == "bad_request"
    assert err.req_id is None


# --- tensors -------------------------------------------------------------------------------


SHAPES = [(), (0,), (1,), (5,), (2, 3), (3, 0, 2), (0, 0), (1, 1, 1, 1), (2, 1, 3, 1, 2)]


def _example(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    count = math.prod(shape)
    if dtype == "bool":
        return (np.arange(count) % 3 == 0).reshape(shape)
    info = np.iinfo(dtype) if dtype.startswith(("int", "uint")) else np.finfo(dtype)
    values = np.linspace(float(info.min) / 4, float(info.max) / 4, num=count)
    return values.astype(dtype).reshape(shape)


def _assert_same_array(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    # Compare the exact bytes: NaN, -0.0 and every bit pattern must survive.
    le = np.ascontiguousarray(want).astype(want.dtype.newbyteorder("<"))
    assert got.tobytes() == le.tobytes()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", WIRE_DTYPES)
def test_tensor_round_trip_every_dtype_and_shape(dtype: str, shape: tuple[int, ...]) -> None:
    arr = _example(dtype, shape)
    wire = protocol.encode_tensor(arr)
    assert wire["dtype"] == dtype
    assert wire["shape"] == list(shape)
    assert isinstance(wire["data"], bytes)
    assert len(wire["data"]) == math.prod(shape) * np.dtype(dtype).itemsize
    # Through a real frame, as a peer would receive it.
    msg = protocol.decode(protocol.encode(_with("task", inputs={"x": wire})))
    back = protocol.decode_tensor(msg["inputs"]["x"])
    _assert_same_array(back, arr)


@given(
    hnp.arrays(
        dtype=st.sampled_from(WIRE_DTYPES).map(np.dtype),
        shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4),
    )
)
@settings(max_examples=300, deadline=None)
def test_tensor_round_trip_property(arr: np.ndarray) -> None:
    wire = msgpack.unpackb(msgpack.packb(protocol.encode_tensor(arr), use_bin_type=True), raw=False)
    _assert_same_array(protocol.decode_tensor(wire), arr)


def test_tensor_wire_format_is_c_order_little_endian() -> None:
    arr = np.arange(6, dtype=">i4").reshape(2, 3).T  # big-endian and not C-contiguous
    wire = protocol.encode_tensor(arr)
    assert wire == {
        "dtype": "int32",
        "shape": [3, 2],
        "data": struct.pack("<6i", 0, 3, 1, 4, 2, 5),
    }
    back = protocol.decode_tensor(wire)
    assert back.tolist() == [[0, 3], [1, 4], [2, 5]]


def test_tensor_sliced_view_is_sent_compact() -> None:
    arr = np.arange(20, dtype=np.float64)[::3]
    wire = protocol.encode_tensor(arr)
    assert len(wire["data"]) == arr.size * 8
    assert protocol.decode_tensor(wire).tolist() == arr.tolist()


def test_decoded_tensor_is_read_only() -> None:
    back = protocol.decode_tensor(protocol.encode_tensor(np.ones(3, dtype=np.float32)))
    assert not back.flags.writeable


def test_tensor_map_helpers_round_trip() -> None:
    arrays: dict[str, np.ndarray] = {
        "a": np.eye(2, dtype=np.float32),
        "b": np.array(3, dtype=np.int64),
    }
    back = protocol.decode_tensor_map(protocol.tensor_map(arrays))
    assert set(back) == {"a", "b"}
    for name, arr in arrays.items():
        _assert_same_array(back[name], arr)


@pytest.mark.parametrize(
    "arr",
    [
        np.array([object()], dtype=object),
        np.array([1 + 2j], dtype=np.complex64),
        np.array(["x"]),
        np.array([b"x"]),
        np.zeros(2, dtype="V4"),
        np.array(["2024-01-01"], dtype="datetime64[D]"),
        np.zeros(2, dtype=[("a", "i4")]),
    ],
    ids=lambda a: a.dtype.str,
)
def test_encode_tensor_refuses_dtypes_the_wire_does_not_carry(arr: np.ndarray) -> None:
    with pytest.raises(ValueError):
        protocol.encode_tensor(arr)


GOOD_T = {"dtype": "float32", "shape": [2, 3], "data": b"\x00" * 24}


@pytest.mark.parametrize(
    "tensor",
    [
        pytest.param([1, 2], id="not-a-map"),
        pytest.param(b"\x00" * 24, id="bin"),
        pytest.param({**GOOD_T, "data": b"\x00" * 23}, id="one-byte-short"),
        pytest.param({**GOOD_T, "data": b"\x00" * 25}, id="one-byte-long"),
        pytest.param({**GOOD_T, "data": b""}, id="no-bytes"),
        pytest.param({**GOOD_T, "shape": [3, 3]}, id="shape-too-big"),
        pytest.param({**GOOD_T, "shape": [6, 0]}, id="empty-shape-with-bytes"),
        pytest.param({**GOOD_T, "shape": []}, id="0d-needs-one-item"),
        pytest.param({**GOOD_T, "dtype": "float64"}, id="dtype-size-mismatch"),
        pytest.param({**GOOD_T, "dtype": "object"}, id="object"),
        pytest.param({**GOOD_T, "dtype": "O"}, id="O"),
        pytest.param({**GOOD_T, "dtype": "complex64"}, id="complex64"),
        pytest.param({**GOOD_T, "dtype": "<f4"}, id="typestr"),
        pytest.param({**GOOD_T, "dtype": "float"}, id="float"),
        pytest.param({**GOOD_T, "dtype": "V24"}, id="void"),
        pytest.param({**GOOD_T, "dtype": "U6"}, id="unicode"),
        pytest.param({**GOOD_T, "dtype": "datetime64"}, id="datetime"),
        pytest.param({**GOOD_T, "dtype": ""}, id="empty-dtype"),
        pytest.param({**GOOD_T, "dtype": b"float32"}, id="bin-dtype"),
        pytest.param({**GOOD_T, "dtype": None}, id="nil-dtype"),
        pytest.param(_without(GOOD_T, "dtype"), id="no-dtype"),
        pytest.param({**GOOD_T, "shape": [-2, -3]}, id="negative-dims"),
        pytest.param({**GOOD_T, "shape": [2, -1]}, id="minus-one"),
        pytest.param({**GOOD_T, "shape": [True, 6]}, id="bool-dim"),
        pytest.param({**GOOD_T, "shape": [2.0, 3.0]}, id="float-dims"),
        pytest.param({**GOOD_T, "shape": ["2", "3"]}, id="str-dims"),
        pytest.param({**GOOD_T, "shape": 6}, id="int-shape"),
        pytest.param({**GOOD_T, "shape": None}, id="nil-shape"),
        pytest.param(_without(GOOD_T, "shape"), id="no-shape"),
        pytest.param({"dtype": "uint8", "shape": [1] * 9, "data": b"\x00"}, id="too-many-dims"),
        pytest.param({**GOOD_T, "data": "\x00" * 24}, id="str-data"),
        pytest.param({**GOOD_T, "data": None}, id="nil-data"),
        pytest.param(_without(GOOD_T, "data"), id="no-data"),
        pytest.param({"dtype": "uint8", "shape": [0, 2**63], "data": b""}, id="huge-dim-no-items"),
        pytest.param(
            {"dtype": "uint8", "shape": [0, 2**64 - 1], "data": b""}, id="u64-dim-no-items"
        ),
        pytest.param(
            {"dtype": "int64", "shape": [0, 2**62, 2**62], "data": b""}, id="too-big-no-items"
        ),
        pytest.param({"dtype": "uint8", "shape": [2**64 - 1], "data": b"\x00"}, id="u64-dim"),
    ],
)
def test_malformed_tensors_are_bad_request(tensor: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode_tensor(tensor, "x", RID)
    assert info.value.code == "bad_request"
    assert info.value.req_id == RID
    # And the same tensor inside a task frame.
    err = _decode_error(protocol.encode(_with("task", inputs={"x": tensor})))
    assert err.code == "bad_request"
    assert err.req_id == RID


@pytest.mark.parametrize("dtype", WIRE_DTYPES)
def test_every_dtype_checks_the_byte_length(dtype: str) -> None:
    size = np.dtype(dtype).itemsize
    protocol.decode_tensor({"dtype": dtype, "shape": [3], "data": b"\x01" * (3 * size)})
    for wrong in (3 * size - 1, 3 * size + 1, 2 * size, 0):
        with pytest.raises(ProtocolError) as info:
            protocol.decode_tensor({"dtype": dtype, "shape": [3], "data": b"\x01" * wrong})
        assert info.value.code == "bad_request"


# --- digest (§4.2) ---------------------------------------------------------------------------


def reference_digest(outputs: dict[str, dict[str, Any]]) -> bytes:
    """PROTOCOL.md §4.2 written from the spec text, independently of netcore.wire.protocol."""
    h = hashlib.sha256()
    for name in sorted(outputs, key=lambda n: n.encode("utf-8")):
        tensor = outputs[name]
        name_b = name.encode("utf-8")
        dtype_b = tensor["dtype"].encode("utf-8")
        shape = tensor["shape"]
        h.update(len(name_b).to_bytes(4, "little") + name_b)
        h.update(len(dtype_b).to_bytes(4, "little") + dtype_b)
        h.update(len(shape).to_bytes(4, "little"))
        for dim in shape:
            h.update(int(dim).to_bytes(8, "little", signed=True))
        h.update(tensor["data"])
    return h.digest()


def test_digest_byte_layout_by_hand() -> None:
    outputs = {
        "b": {"dtype": "int8", "shape": [2], "data": b"\x01\x02"},
        "a": {"dtype": "uint8", "shape": [], "data": b"\x09"},
    }
    expected_input = (
        b"\x01\x00\x00\x00"
        + b"a"
        + b"\x05\x00\x00\x00"
        + b"uint8"
        + b"\x00\x00\x00\x00"
        + b"\x09"
        + b"\x01\x00\x00\x00"
        + b"b"
        + b"\x04\x00\x00\x00"
        + b"int8"
        + b"\x01\x00\x00\x00"
        + b"\x02\x00\x00\x00\x00\x00\x00\x00"
        + b"\x01\x02"
    )
    assert protocol.digest_tensors(outputs) == hashlib.sha256(expected_input).digest()
    assert reference_digest(outputs) == hashlib.sha256(expected_input).digest()


def test_digest_of_no_outputs_is_sha256_of_nothing() -> None:
    assert protocol.digest_tensors({}) == hashlib.sha256(b"").digest()


def test_digest_of_real_outputs_matches_reference() -> None:
    outputs = protocol.tensor_map(
        {
            "probabilities": np.full((2, 10), 0.1, dtype=np.float32),
            "label": np.array([3, 8], dtype=np.int64),
            "é-ünïcode": np.zeros((0, 4), dtype=np.float16),
            "Z": np.array(True),
        }
    )
    assert protocol.digest_tensors(outputs) == reference_digest(outputs)
    assert len(protocol.digest_tensors(outputs)) == 32


def test_digest_is_independent_of_insertion_order() -> None:
    a = {"x": LABEL, "y": PROBS, "B": INPUT}
    b = {"B": INPUT, "y": PROBS, "x": LABEL}
    assert protocol.digest_tensors(a) == protocol.digest_tensors(b)


def test_digest_sorts_by_utf8_bytes() -> None:
    names = ["b", "a", "Z", "é", "\U0001f600", "aa", "a\x00"]
    outputs = {n: {"dtype": "uint8", "shape": [1], "data": bytes([i])} for i, n in enumerate(names)}
    assert protocol.digest_tensors(outputs) == reference_digest(outputs)


@pytest.mark.parametrize(
    "change",
    [
        {"dtype": "int8"},
        {"shape": [4, 1]},
        {"shape": [1, 4]},
        {"data": b"\x00\x01\x02\x04"},
    ],
    ids=["dtype", "shape-4x1", "shape-1x4", "one-bit"],
)
def test_digest_covers_dtype_shape_and_data(change: dict[str, Any]) -> None:
    base = {"out": {"dtype": "uint8", "shape": [4], "data": b"\x00\x01\x02\x03"}}
    changed = {"out": {**base["out"], **change}}
    assert protocol.digest_tensors(base) != protocol.digest_tensors(changed)
    assert protocol.digest_tensors(changed) == reference_digest(changed)


def test_digest_covers_names() -> None:
    t = {"dtype": "uint8", "shape": [1], "data": b"\x00"}
    assert protocol.digest_tensors({"a": t}) != protocol.digest_tensors({"b": t})
    # Length prefixes keep "ab"+"c" apart from "a"+"bc".
    assert protocol.digest_tensors({"ab": t, "c": t}) != protocol.digest_tensors({"a": t, "bc": t})


@given(
    st.dictionaries(
        st.text(min_size=0, max_size=8),
        hnp.arrays(
            dtype=st.sampled_from(WIRE_DTYPES).map(np.dtype),
            shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
        ),
        max_size=4,
    )
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_digest_matches_reference_property(arrays: dict[str, np.ndarray]) -> None:
    surrogate_free = {
        n: a for n, a in arrays.items() if not any(0xD800 <= ord(c) <= 0xDFFF for c in n)
    }
    wire = protocol.tensor_map(surrogate_free)
    assert protocol.digest_tensors(wire) == reference_digest(wire)


# --- robustness: decode only ever raises ProtocolError -------------------------------------


def _decode_only_protocol_errors(frame: bytes) -> None:
    try:
        msg = protocol.decode(frame)
    except ProtocolError as exc:
        assert exc.code in protocol.ERROR_CODES
        assert exc.req_id is None or (isinstance(exc.req_id, bytes) and len(exc.req_id) == 16)
        assert isinstance(exc.message, str)
        return
    assert isinstance(msg, dict)
    assert msg["v"] == 1
    assert msg["t"] in protocol.KNOWN_TYPES


VALID_FRAMES = [protocol.encode(m) for _, m in sorted(VALID_MESSAGES.items())]


@given(st.binary(max_size=300))
@settings(max_examples=2000, deadline=None)
def test_fuzz_random_bytes(frame: bytes) -> None:
    _decode_only_protocol_errors(frame)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(VALID_FRAMES)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not frame:
            break
        pos = draw(st.integers(0, len(frame) - 1))
        if op == "flip":
            frame[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            frame[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            frame[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del frame[pos : pos + draw(st.integers(1, 8))]
        else:
            del frame[pos:]
    return bytes(frame)


@given(mutated_frames())
@settings(max_examples=1000, deadline=None)
def test_fuzz_mutated_valid_frames(frame: bytes) -> None:
    _decode_only_protocol_errors(frame)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)

FIELD_NAMES = sorted(
    {k for m in VALID_MESSAGES.values() for k in m} | {"dtype", "shape", "data", "v", "t"}
)


@st.composite
def structurally_mutated_messages(draw: st.DrawFn) -> bytes:
    msg: dict[str, Any] = {"v": 1, **draw(st.sampled_from(sorted(VALID_MESSAGES.items())))[1]}
    # Replace or add a top-level field, or a field of a nested tensor or model entry.
    target: dict[str, Any] = msg
    if draw(st.booleans()):
        if "inputs" in msg or "outputs" in msg:
            key = "inputs" if "inputs" in msg else "outputs"
            msg[key] = {n: dict(t) for n, t in msg[key].items()}
            target = next(iter(msg[key].values()))
        elif msg.get("models"):
            msg["models"] = [dict(msg["models"][0])]
            target = msg["models"][0]
    for _ in range(draw(st.integers(1, 3))):
        target[draw(st.sampled_from(FIELD_NAMES))] = draw(msgpack_values)
    return msgpack.packb(msg, use_bin_type=True)


@given(structurally_mutated_messages())
@settings(max_examples=500, deadline=None)
def test_fuzz_ill_typed_fields(frame: bytes) -> None:
    _decode_only_protocol_errors(frame)


interesting_dims = st.sampled_from([0, 1, 2, 3, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1])


@given(
    dtype=st.sampled_from([*WIRE_DTYPES, "object", "complex128", "<f4", "", "V8"]) | msgpack_values,
    shape=st.lists(interesting_dims | st.integers(-3, 2**64 - 1), max_size=10) | msgpack_values,
    data=st.binary(max_size=24) | msgpack_values,
)
@settings(max_examples=500, deadline=None)
def test_fuzz_tensors(dtype: Any, shape: Any, data: Any) -> None:
    tensor = {"dtype": dtype, "shape": shape, "data": data}
    try:
        arr = protocol.decode_tensor(tensor, "x", RID)
    except ProtocolError as exc:
        assert exc.code == "bad_request"
        assert exc.req_id == RID
        return
    assert arr.dtype.name == dtype
    assert list(arr.shape) == shape
    assert arr.nbytes == len(data)


def _map_frame(**fields: bytes) -> bytes:
    """A msgpack map built from pre-packed values (to nest deeper than msgpack.packb allows)."""
    assert len(fields) < 16
    out = bytearray([0x80 | len(fields)])
    for key, packed in fields.items():
        out += msgpack.packb(key) + packed
    return bytes(out)


@pytest.mark.parametrize("depth", [10, 500, 900, 990, 1000, 1020, 1100, 5000])
def test_deeply_nested_values_are_protocol_errors(depth: int) -> None:
    nested = b"\x91" * depth + b"\x00"  # [[[...[0]...]]]
    ping = {
        "t": msgpack.packb("ping"),
        "id": msgpack.packb(RID, use_bin_type=True),
        "ts": msgpack.packb(1.0),
    }
    # As the version, as the type, as a tensor's dtype and inside an unknown key.
    frames = [
        _map_frame(**ping, v=nested),
        _map_frame(**{**ping, "t": nested}, v=b"\x01"),
        _map_frame(**ping, v=b"\x01", extra=nested),
        _map_frame(
            t=msgpack.packb("task"),
            v=b"\x01",
            id=msgpack.packb(RID, use_bin_type=True),
            kind=msgpack.packb("infer"),
            model=msgpack.packb("m"),
            timeout_ms=msgpack.packb(5),
            inputs=b"\x81"
            + msgpack.packb("x")
            + b"\x83"
            + msgpack.packb("dtype")
            + nested
            + msgpack.packb("shape")
            + msgpack.packb([1])
            + msgpack.packb("data")
            + msgpack.packb(b"\x00", use_bin_type=True),
        ),
    ]
    for frame in frames:
        _decode_only_protocol_errors(frame)


def test_error_messages_stay_short_for_huge_values() -> None:
    err = _decode_error(_raw({"v": "x" * 100_000, "t": "ping", "id": RID, "ts": 1}))
    assert err.code == "unsupported"
    assert len(protocol.one_line(err.message)) <= 300
    big_dtype = {"dtype": "y" * 100_000, "shape": [1], "data": b"\x00"}
    err = _decode_error(protocol.encode(_with("task", inputs={"x": big_dtype})))
    assert err.code == "bad_request"
    assert len(err.message) < 1000


def test_digest_headers_of_huge_names_are_not_kept() -> None:
    from netcore.wire import protocol

    huge = {"n" * 100_000: protocol.encode_tensor(np.zeros(1, np.float32))}
    before = len(protocol._HEADERS)
    digest = protocol.digest_tensors(huge)
    assert len(digest) == 32 and len(protocol._HEADERS) == before
