"""Rebuild ``iris.onnx`` from onnxruntime's example model ``datasets/logreg_iris.onnx``.

Development only (needs the ``onnx`` package: ``pip install -e '.[train]'``)::

    .venv/bin/python netcore/models/bundled/make_iris.py

onnxruntime ships that logistic regression (4 iris features -> 3 classes, with a ZipMap on
its probabilities) with an input declared as float32 [3, 2]. onnxruntime trusts the declared
width, reads the 3 x 4 coefficients as if they were 3 x 2, and the model then answers
class 0 for every flower. This script declares the input as [N, 4] (and the label output as
[N]); the graph, its weights and its ZipMap are left exactly as they are. It then checks the
result on scikit-learn's iris data when scikit-learn is installed (95% on the 150 flowers).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
SOURCE = Path(os.path.dirname(ort.__file__)) / "datasets" / "logreg_iris.onnx"


def main() -> None:
    model = onnx.load(str(SOURCE))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].ClearField("dim_value")
    dims[0].dim_param = "N"
    dims[1].dim_value = 4
    label_dims = model.graph.output[0].type.tensor_type.shape.dim
    label_dims[0].ClearField("dim_value")
    label_dims[0].dim_param = "N"
    model.doc_string = (
        "onnxruntime's datasets/logreg_iris.onnx with its input declared [N, 4] "
        "(rebuilt by netcore/models/bundled/make_iris.py)"
    )
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    (HERE / "iris.onnx").write_bytes(data)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    try:
        from sklearn.datasets import load_iris
    except ImportError:
        return
    x, y = load_iris(return_X_y=True)
    labels = session.run(["label"], {"float_input": x.astype(np.float32)})[0]
    print(f"iris.onnx: {len(data)} bytes, accuracy {np.mean(labels == y):.1%} on {len(y)} flowers")


if __name__ == "__main__":
    main()
