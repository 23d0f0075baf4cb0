"""Rebuild double.onnx (y = 2 * x, float32 [N]) with the ``onnx`` package (dev only)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper


def build() -> bytes:
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
        initializer=[two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


if __name__ == "__main__":
    Path(__file__).with_name("double.onnx").write_bytes(build())
