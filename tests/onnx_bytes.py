"""Tiny ONNX models built as protobuf bytes by hand, so tests need no ``onnx`` package.

Only the few fields used here are encoded (ModelProto -> GraphProto -> NodeProto, TensorProto,
ValueInfoProto), following onnx.proto's field numbers. Used by the model tests and by
benchmarks/models_bench.py.
"""

from __future__ import annotations

import struct

FLOAT = 1  # TensorProto.DataType.FLOAT


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return _key(field, 2) + _varint(len(data)) + data


def _value_info(name: str, dims: list[int | str]) -> bytes:
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims)
    tensor_type = _int(1, FLOAT) + _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _tensor(name: str, dims: list[int], raw: bytes) -> bytes:
    return b"".join(_int(1, d) for d in dims) + _int(2, FLOAT) + _bytes(8, name) + _bytes(9, raw)


def _node(op: str, inputs: list[str], outputs: list[str]) -> bytes:
    return (
        b"".join(_bytes(1, i) for i in inputs)
        + b"".join(_bytes(2, o) for o in outputs)
        + _bytes(4, op)
    )


def scale_model(factor: float = 3.0, padding_bytes: int = 0, seed: int = 0) -> bytes:
    """``y = x * factor`` on float32 [N].

    With ``padding_bytes``, the graph also carries a float32 weight ``w`` of about that size
    and uses it (output ``w_size``, its element count), so the file is as big as wanted and
    onnxruntime does not drop the weight; ``seed`` varies its bytes.
    """
    count = padding_bytes // 4
    pad = bytes((i * 131 + seed) & 0xFF for i in range(min(count * 4, 4096)))
    pad = (pad * (count * 4 // max(1, len(pad)) + 1))[: count * 4]
    nodes = [_node("Mul", ["x", "factor"], ["y"])]
    initializers = [_tensor("factor", [], struct.pack("<f", factor))]
    outputs = [_value_info("y", ["N"])]
    if count:
        # A weight the graph really uses: an extra output holding its element count.
        nodes.append(_node("Size", ["w"], ["w_size"]))
        initializers.append(_tensor("w", [count], pad))
        outputs.append(_bytes(1, "w_size") + _bytes(2, _bytes(1, _int(1, 7) + _bytes(2, b""))))
    graph = (
        b"".join(_bytes(1, n) for n in nodes)
        + _bytes(2, "scale")
        + b"".join(_bytes(5, t) for t in initializers)
        + _bytes(11, _value_info("x", ["N"]))
        + b"".join(_bytes(12, o) for o in outputs)
    )
    opset = _bytes(1, "") + _int(2, 13)
    return _int(1, 8) + _bytes(7, graph) + _bytes(8, opset)


def _attr_int(name: str, value: int) -> bytes:
    """AttributeProto: name (1), i (3), type (20) = INT (2)."""
    return _bytes(1, name) + _int(3, value) + _int(20, 2)


def classifier_model(features: int = 13, classes: int = 3, seed: int = 0) -> bytes:
    """A linear classifier shaped like skl2onnx's output: input ``X`` float32 [N, features];
    outputs ``output_label`` int64 [N] (ArgMax of the scores) and ``output_probability``
    float32 [N, classes] (their Softmax). Weights vary with ``seed`` (a new sha256)."""
    weights = [((i * 37 + seed * 11) % 17 - 8) / 8.0 for i in range(features * classes)]
    raw = struct.pack(f"<{len(weights)}f", *weights)
    argmax = (
        _bytes(1, "scores")
        + _bytes(2, "output_label")
        + _bytes(4, "ArgMax")
        + _bytes(5, _attr_int("axis", 1))
        + _bytes(5, _attr_int("keepdims", 0))
    )
    nodes = [
        _node("MatMul", ["X", "W"], ["scores"]),
        argmax,
        _node("Softmax", ["scores"], ["output_probability"]),
    ]
    label = _bytes(1, "output_label") + _bytes(
        2, _bytes(1, _int(1, 7) + _bytes(2, _bytes(1, _bytes(2, "N"))))
    )
    graph = (
        b"".join(_bytes(1, n) for n in nodes)
        + _bytes(2, "classifier")
        + _bytes(5, _tensor("W", [features, classes], raw))
        + _bytes(11, _value_info("X", ["N", features]))
        + _bytes(12, label)
        + _bytes(12, _value_info("output_probability", ["N", classes]))
    )
    opset = _bytes(1, "") + _int(2, 13)
    return _int(1, 8) + _bytes(7, graph) + _bytes(8, opset)
