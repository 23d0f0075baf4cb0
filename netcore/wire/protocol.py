"""Wire protocol v1: msgpack framing, validation, tensor codec and result digest.

Messages travel as plain ``dict`` objects (msgpack maps with str keys). This module is the
only place that knows their shape: :func:`decode` turns one frame into a validated dict or
raises :class:`ProtocolError` carrying the error code the protocol prescribes, and
:func:`encode` turns a dict into one frame. Keeping messages as dicts (rather than
dataclasses) avoids a copy per message on the hot path; the validators are the schema.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
from collections.abc import Mapping
from typing import Any, Final

import msgpack
import numpy as np

VERSION: Final = 1
ID_LEN: Final = 16
MAX_FRAME: Final = 16 * 1024 * 1024
MAX_CHUNK: Final = 1024 * 1024

REQUESTS: Final = frozenset({"hello", "ping", "task", "model_get", "punch"})
NO_REPLY: Final = frozenset({"cancel", "pong", "result", "error", "model_chunk", "bye", "punch_ok"})
PUNCH_TOKEN_LEN: Final = 16
MAX_PUNCH_ADDR: Final = 64
"""``punch`` and ``punch_ok`` (docs/protocol.md, "Hole punching"): a node that reaches a peer
through a relay asks it to open a direct TCP connection at the same time as itself. Sent
only to a peer whose ``hello`` carries ``punch: 1``; other implementations never see them."""
KNOWN_TYPES: Final = REQUESTS | NO_REPLY
DEALER_SERVES: Final = ("model_get",)
"""Requests a node answers when the peer its DEALER is connected to sends them on that DEALER:
the optional ``hello`` key ``dealer_serves`` lists them (docs/protocol.md, "model_get back on
the task's connection"); other implementations ignore the key and never receive these."""


def serves_back(hello: Mapping[str, Any]) -> bool:
    """Whether a ``hello`` says its sender answers ``model_get`` on its DEALER."""
    listed = hello.get("dealer_serves")
    return isinstance(listed, list) and "model_get" in listed


ERROR_CODES: Final = frozenset(
    {
        "bad_request",
        "bad_input",
        "unknown_model",
        "overloaded",
        "too_large",
        "unsupported",
        "hello_required",
        "timeout",
        "cancelled",
        "internal",
    }
)

# Tensor dtypes a peer may send. Object and void dtypes are never accepted from the wire.
ALLOWED_DTYPES: Final = frozenset(
    {
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
    }
)
MAX_NDIM: Final = 8
_WIRE_DTYPES: Final = {name: np.dtype(name).newbyteorder("<") for name in ALLOWED_DTYPES}
"""Each allowed dtype, little-endian, built once (np.dtype() costs microseconds per task)."""
_DTYPE_NAMES: dict[np.dtype[Any], str] = {}


def dtype_name(dtype: np.dtype[Any]) -> str:
    """``dtype.name``, memoised: numpy computes it in Python on every access (~3 us)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = dtype.name
        if len(_DTYPE_NAMES) < 256:
            _DTYPE_NAMES[dtype] = name
    return name


class ProtocolError(Exception):
    """A frame or message that breaks the protocol; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str, req_id: bytes | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.req_id = req_id


_ids = random.Random(os.urandom(32))
"""Request ids only need to be unique per sender (replies come back on the authenticated
connection they were sent on, and a ``cancel`` counts only from the task's requester), so a
generator seeded from the OS serves: ``os.urandom`` is a system call per task."""


class TaskError(Exception):
    """A task that ends in a protocol ``error``; ``code`` is the protocol's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def new_id() -> bytes:
    """A fresh 16-byte request id."""
    return _ids.getrandbits(128).to_bytes(ID_LEN, "little")


def reseed_ids() -> None:
    """After a fork, so parent and child do not make the same ids."""
    _ids.seed(os.urandom(32))


os.register_at_fork(after_in_child=reseed_ids)


_packer = msgpack.Packer(use_bin_type=True)


def encode(msg: Mapping[str, Any]) -> bytes:
    """One message map to one frame. ``v`` is added when missing."""
    if "v" not in msg:
        msg = {"v": VERSION, **msg}
    return _packer.pack(msg)


def _unpack(frame: bytes | memoryview) -> Any:
    try:
        return msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            use_list=True,
        )
    except Exception as exc:
        raise ProtocolError("bad_request", f"not msgpack: {type(exc).__name__}") from None


def _show(value: Any) -> str:
    """A short repr of a peer's value for an error message (never recursive, never long)."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)[:40]
    if isinstance(value, (str, bytes)):
        return repr(value[:40])
    return f"<{type(value).__name__}>"


def _echo_id(msg: Mapping[Any, Any]) -> bytes | None:
    rid = msg.get("id")
    if isinstance(rid, bytes) and len(rid) == ID_LEN:
        return rid
    return None


def decode(frame: bytes | memoryview) -> Message:
    """Parse and validate one frame.

    Checks run in the protocol's order: a msgpack map with a str ``t`` (else ``bad_request``),
    then ``v`` and a known ``t`` (else ``unsupported``), then the fields of that type
    (``bad_request``). The greeting check sits between the last two and belongs to the node,
    so callers use :func:`decode_envelope` and :func:`validate` separately when they need it.
    """
    msg = decode_envelope(frame)
    validate(msg)
    return msg


class Message(dict[str, Any]):
    """A received message: the map as sent, plus the arrays :func:`validate` decoded from its
    tensors (so they are decoded once, see :func:`arrays_of`)."""

    __slots__ = ("arrays",)

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__(fields)
        self.arrays: dict[str, np.ndarray] | None = None


def decode_envelope(frame: bytes | memoryview) -> Message:
    """Unpack a frame and check only the envelope (map, ``t``, ``v``)."""
    raw = _unpack(frame)
    if not isinstance(raw, dict):
        raise ProtocolError("bad_request", "a message must be a msgpack map")
    msg = Message(raw)
    t = msg.get("t")
    if not isinstance(t, str):
        raise ProtocolError("bad_request", "message has no str field 't'", _echo_id(msg))
    v = msg.get("v")
    if type(v) is not int or v != VERSION:  # not True, not 1.0
        raise ProtocolError(
            "unsupported", f"protocol version {_show(v)} not supported", _echo_id(msg)
        )
    if t not in KNOWN_TYPES:
        raise ProtocolError("unsupported", f"unknown message type {t[:40]!r}", _echo_id(msg))
    return msg


# --- field validation -------------------------------------------------------------------


def _need(msg: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = msg.get(key)
    # bool is an int subclass; never accept it where a number is meant.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise ProtocolError("bad_request", f"field '{key}' must be {what}", _echo_id(msg))
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _need_str_list(msg: Mapping[str, Any], key: str) -> list[str]:
    value = _need(msg, key, list, "a list of str")
    if not all(isinstance(v, str) for v in value):
        raise ProtocolError("bad_request", f"field '{key}' must be a list of str", _echo_id(msg))
    return value


def _need_id(msg: Mapping[str, Any]) -> bytes:
    rid = msg.get("id")
    if not isinstance(rid, bytes) or len(rid) != ID_LEN:
        raise ProtocolError("bad_request", "field 'id' must be 16 bytes")
    return rid


def _validate_model_entry(entry: Any, msg: Mapping[str, Any]) -> None:
    rid = _echo_id(msg)
    if not isinstance(entry, dict):
        raise ProtocolError("bad_request", "a model entry must be a map", rid)
    try:
        _need(entry, "name", str, "str")
        _need(entry, "sha256", str, "str")
        _need(entry, "size", int, "int")
        inputs = _need(entry, "inputs", list, "a list")
        outputs = _need(entry, "outputs", list, "a list")
    except ProtocolError as exc:
        raise ProtocolError(exc.code, f"model entry: {exc.message}", rid) from None
    for spec in inputs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ProtocolError("bad_request", "model input spec must be a map with a name", rid)
    for spec in outputs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ProtocolError("bad_request", "model output spec must be a map with a name", rid)


def _validate_tensor_map(msg: dict[str, Any], key: str) -> None:
    tensors = _need(msg, key, dict, "a map of tensors")
    arrays: dict[str, np.ndarray] = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str):
            raise ProtocolError("bad_request", f"tensor names in '{key}' must be str", msg["id"])
        arrays[name] = decode_tensor(tensor, name, msg["id"])
    if isinstance(msg, Message):
        msg.arrays = arrays


def arrays_of(msg: dict[str, Any], key: str) -> dict[str, np.ndarray]:
    """The decoded tensors of a validated message's ``key`` (``inputs`` or ``outputs``):
    the ones :func:`validate` decoded, or decoded now."""
    if isinstance(msg, Message) and msg.arrays is not None:
        return msg.arrays
    return decode_tensor_map(msg[key])


def validate(msg: dict[str, Any]) -> None:
    """Check the fields of an envelope-checked message; raise ``bad_request`` on a bad one."""
    t = msg["t"]
    if t in REQUESTS or t in ("pong", "result", "model_chunk", "cancel", "punch_ok"):
        _need_id(msg)
    if t == "hello":
        _need(msg, "name", str, "str")
        _need(msg, "net", str, "str")
        _need_str_list(msg, "caps")
        _need_str_list(msg, "endpoints")
        for entry in _need(msg, "models", list, "a list of models"):
            _validate_model_entry(entry, msg)
        if "accel" in msg:
            _need_str_list(msg, "accel")
        if "capacity" in msg:
            _need(msg, "capacity", int, "int")
    elif t == "ping":
        _need(msg, "ts", (float, int), "a number")
    elif t == "pong":
        _need(msg, "ts", (float, int), "a number")
        for key in ("inflight", "queued", "capacity"):
            if key in msg:
                _need(msg, key, int, "int")
    elif t == "task":
        _need(msg, "kind", str, "str")
        _need(msg, "model", str, "str")
        if msg.get("sha256") is not None:
            _need(msg, "sha256", str, "str")
        timeout = _need(msg, "timeout_ms", (int, float), "a number")
        if not timeout > 0:  # also catches NaN
            raise ProtocolError("bad_request", "field 'timeout_ms' must be positive", msg["id"])
        _validate_tensor_map(msg, "inputs")
    elif t == "result":
        _validate_tensor_map(msg, "outputs")
        digest = _need(msg, "digest", bytes, "32 bytes")
        if len(digest) != 32:
            raise ProtocolError("bad_request", "field 'digest' must be 32 bytes", msg["id"])
        _need(msg, "took_us", int, "int")
    elif t == "error":
        _need(msg, "code", str, "str")
        _need(msg, "message", str, "str")
    elif t == "model_get":
        _need(msg, "name", str, "str")
        _need(msg, "sha256", str, "str")
        offset = _need(msg, "offset", int, "int")
        length = _need(msg, "length", int, "int")
        if offset < 0 or length < 0:
            raise ProtocolError("bad_request", "offset and length must be >= 0", msg["id"])
    elif t in ("punch", "punch_ok"):
        addr = _need(msg, "addr", str, "str")
        if len(addr) > MAX_PUNCH_ADDR:
            raise ProtocolError("bad_request", "field 'addr' is too long", msg["id"])
        if t == "punch":
            token = _need(msg, "token", bytes, f"{PUNCH_TOKEN_LEN} bytes")
            if len(token) != PUNCH_TOKEN_LEN:
                raise ProtocolError(
                    "bad_request", f"field 'token' must be {PUNCH_TOKEN_LEN} bytes", msg["id"]
                )
    elif t == "model_chunk":
        _need(msg, "sha256", str, "str")
        _need(msg, "offset", int, "int")
        _need(msg, "data", bytes, "bin")
        _need(msg, "total", int, "int")


# --- tensors ----------------------------------------------------------------------------


def encode_tensor(array: np.ndarray) -> dict[str, Any]:
    """A numpy array as a protocol tensor: C order, little-endian bytes."""
    arr = np.asarray(array)
    name = dtype_name(arr.dtype)
    if name not in ALLOWED_DTYPES:
        raise ValueError(f"dtype {name} cannot be sent")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return {"dtype": name, "shape": list(arr.shape), "data": arr.tobytes()}


def decode_tensor(tensor: Any, name: str = "tensor", req_id: bytes | None = None) -> np.ndarray:
    """A protocol tensor as a read-only numpy array (zero-copy over the frame's bytes)."""
    if not isinstance(tensor, dict):
        raise ProtocolError("bad_request", f"tensor '{name}' must be a map", req_id)
    dtype_name = tensor.get("dtype")
    shape = tensor.get("shape")
    data = tensor.get("data")
    if not isinstance(dtype_name, str) or dtype_name not in ALLOWED_DTYPES:
        raise ProtocolError(
            "bad_request", f"tensor '{name}' has unknown dtype {_show(dtype_name)}", req_id
        )
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise ProtocolError(
            "bad_request", f"tensor '{name}' shape must be a list of non-negative int", req_id
        )
    if not isinstance(data, bytes):
        raise ProtocolError("bad_request", f"tensor '{name}' data must be bin", req_id)
    dtype = _WIRE_DTYPES[dtype_name]
    count = 1
    for d in shape:
        count *= d
    if count * dtype.itemsize != len(data):
        raise ProtocolError(
            "bad_request",
            f"tensor '{name}' has {len(data)} bytes, shape {shape} x {dtype.itemsize} "
            f"needs {count * dtype.itemsize}",
            req_id,
        )
    try:
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    except ValueError:  # e.g. shape [0, 2**63]: no items, but numpy cannot represent it
        raise ProtocolError(
            "bad_request", f"tensor '{name}' shape {shape} is too large", req_id
        ) from None


def tensor_map(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {name: encode_tensor(arr) for name, arr in arrays.items()}


def decode_tensor_map(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {name: decode_tensor(t, name) for name, t in tensors.items()}


# --- digest (PROTOCOL.md §4.2) ------------------------------------------------------------

_u32 = struct.Struct("<I")


def digest_tensors(tensors: Mapping[str, Mapping[str, Any]]) -> bytes:
    """SHA-256 over wire tensors sorted by name (see PROTOCOL.md §4.2).

    Names sort by their UTF-8 bytes, which is code point order: ``sorted`` on the str is the
    same order. Each tensor's header goes to the hash in one piece, then its data."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(_digest_header(name, str(t["dtype"]), tuple(t["shape"])))
        h.update(t["data"])
    return h.digest()


_HEADERS: dict[tuple[str, str, tuple[int, ...]], bytes] = {}
"""A model's outputs have the same names, dtypes and (mostly) shapes task after task."""


def _digest_header(name: str, dtype: str, shape: tuple[int, ...]) -> bytes:
    key = (name, dtype, shape)
    header = _HEADERS.get(key)
    if header is None:
        name_b = name.encode("utf-8")
        dtype_b = dtype.encode("utf-8")
        header = b"".join(
            (
                _u32.pack(len(name_b)),
                name_b,
                _u32.pack(len(dtype_b)),
                dtype_b,
                _u32.pack(len(shape)),
                struct.pack(f"<{len(shape)}q", *shape),
            )
        )
        if len(header) <= 256:  # peers choose names and shapes: keep only small ones
            if len(_HEADERS) >= 1024:
                _HEADERS.clear()
            _HEADERS[key] = header
    return header


# --- message builders -------------------------------------------------------------------


def error(code: str, message: str, req_id: bytes | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"v": VERSION, "t": "error", "code": code, "message": one_line(message)}
    if req_id is not None:
        msg["id"] = req_id
    return msg


def one_line(text: str, limit: int = 300) -> str:
    """Collapse text to one line of bounded length, as the protocol's ``message`` requires."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
