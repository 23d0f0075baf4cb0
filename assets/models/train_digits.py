"""Train and export the bundled ``digits`` demo model.

Trains a small MLP classifier on scikit-learn's bundled ``load_digits`` data
set (8x8 grayscale images, pixel values 0..16; nothing is downloaded), exports
it to ONNX and writes:

* ``assets/models/digits.onnx``       - the model (input ``input``: float32
  ``[N, 64]`` raw pixel values 0..16; outputs ``label``: int64 ``[N]`` and
  ``probabilities``: float32 ``[N, 10]``). Feature scaling is part of the
  graph, so clients send raw pixel values.
* ``assets/models/digits.json``       - the manifest (sha256, size, I/O
  signature, labels and the held-out accuracy measured with onnxruntime).
* ``assets/samples/digits-test.npz``  - the held-out test set (``x``: float32
  ``[N, 64]`` raw values 0..16, ``y``: int64 ``[N]``).

Run it from the repository root::

    python assets/models/train_digits.py

It needs the development extras ``scikit-learn`` and ``skl2onnx`` (plus
``onnx``, ``onnxruntime`` and ``numpy``). Nothing at runtime needs
scikit-learn or skl2onnx; they are only used to (re)build these assets.
The script is reproducible: every random seed is fixed.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

SEED = 0
TEST_SIZE = 0.2
N_FEATURES = 64
N_CLASSES = 10

MODELS_DIR = Path(__file__).resolve().parent
ASSETS_DIR = MODELS_DIR.parent
ONNX_PATH = MODELS_DIR / "digits.onnx"
MANIFEST_PATH = MODELS_DIR / "digits.json"
SAMPLES_PATH = ASSETS_DIR / "samples" / "digits-test.npz"

INPUT_NAME = "input"
LABEL_OUTPUT = "label"
PROBA_OUTPUT = "probabilities"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
DESCRIPTION = (
    "MLP digit classifier (8x8 grayscale, pixel values 0-16) trained on scikit-learn's load_digits"
)


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x_train, x_test, y_train, y_test)`` with raw pixel values."""
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, stratify=y, random_state=SEED
    )
    return x_train, x_test, y_train, y_test


def train(x_train: np.ndarray, y_train: np.ndarray) -> Pipeline:
    """Fit the scaler + MLP pipeline."""
    pipeline = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "mlp",
                MLPClassifier(
                    hidden_layer_sizes=(64,),
                    max_iter=1000,
                    random_state=SEED,
                ),
            ),
        ]
    )
    pipeline.fit(x_train, y_train)
    return pipeline


def export_onnx(pipeline: Pipeline) -> bytes:
    """Convert the fitted pipeline to a deterministic serialized ONNX model."""
    clf = pipeline.named_steps["mlp"]
    model = convert_sklearn(
        pipeline,
        name="digits",
        initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
        final_types=[
            (LABEL_OUTPUT, Int64TensorType([None])),
            (PROBA_OUTPUT, FloatTensorType([None, N_CLASSES])),
        ],
        options={id(clf): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    # Fix every free-form metadata field so the bytes only depend on the
    # trained weights (and the converter's graph layout).
    model.producer_name = "p2pai-train-digits"
    model.producer_version = "1.0.0"
    model.domain = "p2pai"
    model.model_version = 1
    model.doc_string = DESCRIPTION
    model.graph.doc_string = ""
    del model.metadata_props[:]
    onnx.checker.check_model(model)
    return model.SerializeToString()


def check_signature(session: ort.InferenceSession) -> None:
    """Assert the exported graph exposes exactly the expected I/O names."""
    inputs = [(i.name, i.type) for i in session.get_inputs()]
    outputs = [(o.name, o.type) for o in session.get_outputs()]
    assert inputs == [(INPUT_NAME, "tensor(float)")], inputs
    assert outputs == [
        (LABEL_OUTPUT, "tensor(int64)"),
        (PROBA_OUTPUT, "tensor(float)"),
    ], outputs


def run_onnx(session: ort.InferenceSession, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the ONNX model and return ``(labels, probabilities)``."""
    labels, proba = session.run([LABEL_OUTPUT, PROBA_OUTPUT], {INPUT_NAME: x.astype(np.float32)})
    return np.asarray(labels), np.asarray(proba)


def build_manifest(onnx_bytes: bytes, accuracy: float) -> dict[str, Any]:
    """Return the manifest describing ``digits.onnx``."""
    return {
        "name": "digits",
        "version": "1.0.0",
        "file": ONNX_PATH.name,
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "size": len(onnx_bytes),
        "description": DESCRIPTION,
        "inputs": [{"name": INPUT_NAME, "dtype": "float32", "shape": [-1, N_FEATURES]}],
        "outputs": [
            {"name": LABEL_OUTPUT, "dtype": "int64"},
            {"name": PROBA_OUTPUT, "dtype": "float32"},
        ],
        "label_output": LABEL_OUTPUT,
        "labels": [str(i) for i in range(N_CLASSES)],
        # Images of one digit (netcore/models/kinds/image.py) run the uint8 twin of this
        # graph, digits-u8 (assets/models/make_digits_u8.py); .npy rows run this one.
        "kind": "image-classification",
        "kind_params": {"size": [8, 8], "graph": "digits-u8", "input": "pixels"},
        "accuracy": round(accuracy, 4),
        "training": {
            "dataset": "sklearn.datasets.load_digits",
            "test_size": TEST_SIZE,
            "random_state": SEED,
        },
    }


def main() -> None:
    random.seed(SEED)
    np.random.seed(SEED)

    x_train, x_test, y_train, y_test = load_split()
    pipeline = train(x_train, y_train)
    sk_labels = pipeline.predict(x_test)
    sk_accuracy = float(np.mean(sk_labels == y_test))

    onnx_bytes = export_onnx(pipeline)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    check_signature(session)
    labels, proba = run_onnx(session, x_test)
    assert labels.dtype == np.int64 and labels.shape == (len(x_test),)
    assert proba.dtype == np.float32 and proba.shape == (len(x_test), N_CLASSES)

    agreement = float(np.mean(labels == sk_labels))
    assert agreement >= 0.99, f"ONNX/sklearn label agreement too low: {agreement}"
    accuracy = float(np.mean(labels == y_test))

    ONNX_PATH.write_bytes(onnx_bytes)
    manifest = build_manifest(onnx_bytes, accuracy)
    MANIFEST_PATH.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    SAMPLES_PATH.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        SAMPLES_PATH,
        x=x_test.astype(np.float32),
        y=y_test.astype(np.int64),
    )

    print(f"sklearn accuracy:   {sk_accuracy:.4f}")
    print(f"onnx accuracy:      {accuracy:.4f} ({len(x_test)} held-out samples)")
    print(f"onnx/sklearn agree: {agreement:.4f}")
    print(f"wrote {ONNX_PATH.name}: {len(onnx_bytes)} bytes, sha256 {manifest['sha256']}")
    print(f"wrote {MANIFEST_PATH.name} and {SAMPLES_PATH.name}")


if __name__ == "__main__":
    main()
