"""Fixed arithmetic folded into ONNX graphs, so that less travels on the wire.

A model's pre- and post-processing that is plain arithmetic (scaling pixels, normalising,
pooling token states, an argmax) runs inside the graph instead of on the requester: images
go out as uint8 pixels (a quarter of float32), embeddings come back as one pooled, normalised
vector instead of every token's state, and a recogniser sends back its best character per step
instead of a softmax over 18,710 of them. Each function here takes the original graph and
returns a new one (a deterministic build: the same source gives the same bytes, so every node
that builds it arrives at the same sha256). Needs the ``onnx`` package, which comes with the
``ocr`` and ``embed`` extras (and ``train``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PIXEL_TO_UNIT = 2.0 / 255.0
"""PaddleOCR's normalisation (x / 255 - 0.5) / 0.5 is x * 2/255 - 1."""


def _onnx() -> Any:
    import onnx

    return onnx


def _const(name: str, value: Any, dtype: Any = np.float32) -> Any:
    onnx = _onnx()
    return onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _replace_input(
    model: Any,
    old: str,
    new_input: Any,
    nodes: Sequence[Any],
    initializers: Sequence[Any] = (),
) -> None:
    """Replace graph input ``old`` by ``new_input``; ``nodes`` compute ``old`` from it."""
    graph = model.graph
    kept = [i for i in graph.input if i.name != old]
    del graph.input[:]
    graph.input.extend([new_input, *kept])
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    graph.initializer.extend(initializers)


def _replace_outputs(model: Any, nodes: Sequence[Any], outputs: Sequence[Any]) -> None:
    graph = model.graph
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.extend(outputs)


def _image_front(model: Any, old: str, name: str, dims: Sequence[int | str], prefix: str) -> None:
    """uint8 NHWC BGR pixels -> the float NCHW input PaddleOCR's graphs take."""
    onnx = _onnx()
    helper = onnx.helper
    new_input = helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, list(dims))
    nodes = [
        helper.make_node("Cast", [name], [f"{prefix}_f"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Mul", [f"{prefix}_f", f"{prefix}_scale"], [f"{prefix}_s"]),
        helper.make_node("Sub", [f"{prefix}_s", f"{prefix}_one"], [f"{prefix}_n"]),
        helper.make_node("Transpose", [f"{prefix}_n"], [old], perm=[0, 3, 1, 2]),
    ]
    inits = [_const(f"{prefix}_scale", PIXEL_TO_UNIT), _const(f"{prefix}_one", 1.0)]
    _replace_input(model, old, new_input, nodes, inits)


def _finish(model: Any, doc: str) -> bytes:
    onnx = _onnx()
    model.doc_string = doc
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def fold_digits_u8(source: bytes) -> bytes:
    """The digits MLP taking uint8 pixels [N, 64] (0-255, light ink on dark): Cast and a Mul
    by 16/255 give the 0-16 values of scikit-learn's digits the MLP was trained on."""
    onnx = _onnx()
    helper = onnx.helper
    model = onnx.load_from_string(source)
    old = model.graph.input[0].name
    new_input = helper.make_tensor_value_info("pixels", onnx.TensorProto.UINT8, ["N", 64])
    nodes = [
        helper.make_node("Cast", ["pixels"], ["pixels_f"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Mul", ["pixels_f", "pixels_scale"], [old]),
    ]
    _replace_input(model, old, new_input, nodes, [_const("pixels_scale", 16.0 / 255.0)])
    return _finish(model, "digits MLP with uint8 pixels in (x * 16/255 folded in front)")


def fold_ocr_det(source: bytes) -> bytes:
    """PP-OCR detection taking uint8 BGR [N, H, W, 3]; its probability map comes back as
    uint8 [N, 1, H, W] (round(p * 255)): a quarter of the bytes both ways."""
    onnx = _onnx()
    helper = onnx.helper
    model = onnx.load_from_string(source)
    old_in = model.graph.input[0].name
    old_out = model.graph.output[0].name
    _image_front(model, old_in, "image", ["N", "H", "W", 3], "det_in")
    nodes = [
        helper.make_node("Mul", [old_out, "det_255"], ["det_p255"]),
        helper.make_node("Add", ["det_p255", "det_half"], ["det_round"]),
        helper.make_node("Clip", ["det_round", "det_lo", "det_hi"], ["det_clip"]),
        helper.make_node("Cast", ["det_clip"], ["prob"], to=onnx.TensorProto.UINT8),
    ]
    model.graph.initializer.extend(
        [
            _const("det_255", 255.0),
            _const("det_half", 0.5),
            _const("det_lo", 0.0),
            _const("det_hi", 255.0),
        ]
    )
    out = helper.make_tensor_value_info("prob", onnx.TensorProto.UINT8, ["N", 1, "H", "W"])
    _replace_outputs(model, nodes, [out])
    return _finish(
        model, "PP-OCRv6 detection: uint8 BGR NHWC in, uint8 probability map out (p2pai)"
    )


def fold_ocr_rec(source: bytes) -> bytes:
    """PP-OCR recognition taking uint8 BGR [N, 48, W, 3]; per time step it returns the best
    character's index (int32 [N, T]) and its probability (float32 [N, T]), not the softmax
    over every character. The character list (metadata ``character``) is kept."""
    onnx = _onnx()
    helper = onnx.helper
    model = onnx.load_from_string(source)
    old_in = model.graph.input[0].name
    old_out = model.graph.output[0].name
    _image_front(model, old_in, "image", ["N", 48, "W", 3], "rec_in")
    nodes = [
        helper.make_node("ArgMax", [old_out], ["rec_idx64"], axis=2, keepdims=0),
        helper.make_node("Cast", ["rec_idx64"], ["index"], to=onnx.TensorProto.INT32),
        helper.make_node("ReduceMax", [old_out], ["score"], axes=[2], keepdims=0),
    ]
    outs = [
        helper.make_tensor_value_info("index", onnx.TensorProto.INT32, ["N", "T"]),
        helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, ["N", "T"]),
    ]
    _replace_outputs(model, nodes, outs)
    return _finish(model, "PP-OCRv6 recognition: uint8 BGR NHWC in, argmax and its score out")


def fold_ocr_cls(source: bytes) -> bytes:
    """PP-OCR's angle classifier taking uint8 BGR [N, 48, 192, 3] -> [N, 2] (0, 180 deg)."""
    onnx = _onnx()
    helper = onnx.helper
    model = onnx.load_from_string(source)
    old_in = model.graph.input[0].name
    old_out = model.graph.output[0].name
    _image_front(model, old_in, "image", ["N", 48, 192, 3], "cls_in")
    nodes = [helper.make_node("Identity", [old_out], ["angle"])]
    out = helper.make_tensor_value_info("angle", onnx.TensorProto.FLOAT, ["N", 2])
    _replace_outputs(model, nodes, [out])
    return _finish(model, "PP-OCR angle classifier: uint8 BGR NHWC in (p2pai)")


def fold_minilm(source: bytes) -> bytes:
    """all-MiniLM-L6-v2 taking token ids int32 [B, S] (0 is padding) and returning the
    sentence embedding float32 [B, 384]: the attention mask is ``ids != 0``, token types are
    zeros, and the mean over the mask then L2 normalisation (sentence-transformers' pooling)
    run in the graph, so 4 bytes a token go out and 384 floats come back."""
    onnx = _onnx()
    helper = onnx.helper
    model = onnx.load_from_string(source)
    graph = model.graph
    names = [i.name for i in graph.input]
    if names != ["input_ids", "attention_mask", "token_type_ids"]:
        raise ValueError(f"unexpected MiniLM inputs {names}")
    old_out = graph.output[0].name
    tokens = helper.make_tensor_value_info("tokens", onnx.TensorProto.INT32, ["B", "S"])
    front = [
        helper.make_node("Cast", ["tokens"], ["input_ids"], to=onnx.TensorProto.INT64),
        helper.make_node("Greater", ["tokens", "pool_zero_i"], ["pool_maskb"]),
        helper.make_node("Cast", ["pool_maskb"], ["attention_mask"], to=onnx.TensorProto.INT64),
        helper.make_node("Mul", ["input_ids", "pool_zero_l"], ["token_type_ids"]),
    ]
    del graph.input[:]
    graph.input.append(tokens)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*front, *existing])
    back = [
        helper.make_node("Cast", ["pool_maskb"], ["pool_maskf"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["pool_maskf", "pool_axis2"], ["pool_mask3"]),
        helper.make_node("Mul", [old_out, "pool_mask3"], ["pool_masked"]),
        helper.make_node("ReduceSum", ["pool_masked", "pool_axis1"], ["pool_sum"], keepdims=0),
        helper.make_node("ReduceSum", ["pool_mask3", "pool_axis1"], ["pool_count"], keepdims=0),
        helper.make_node("Max", ["pool_count", "pool_eps_count"], ["pool_countc"]),
        helper.make_node("Div", ["pool_sum", "pool_countc"], ["pool_mean"]),
        helper.make_node("ReduceL2", ["pool_mean"], ["pool_norm"], axes=[1], keepdims=1),
        helper.make_node("Max", ["pool_norm", "pool_eps_norm"], ["pool_normc"]),
        helper.make_node("Div", ["pool_mean", "pool_normc"], ["sentence_embedding"]),
    ]
    graph.initializer.extend(
        [
            _const("pool_zero_i", 0, np.int32),
            _const("pool_zero_l", 0, np.int64),
            _const("pool_axis1", [1], np.int64),
            _const("pool_axis2", [2], np.int64),
            _const("pool_eps_count", 1e-9),
            _const("pool_eps_norm", 1e-12),
        ]
    )
    out = helper.make_tensor_value_info("sentence_embedding", onnx.TensorProto.FLOAT, ["B", 384])
    _replace_outputs(model, back, [out])
    return _finish(
        model, "all-MiniLM-L6-v2 int8: int32 token ids in, mean-pooled L2-normalised vector out"
    )


def metadata(source: bytes, key: str) -> str | None:
    """A ``metadata_props`` value of a graph (PP-OCR keeps its character list there)."""
    onnx = _onnx()
    model = onnx.load_from_string(source)
    for prop in model.metadata_props:
        if prop.key == key:
            value: str = prop.value
            return value
    return None
