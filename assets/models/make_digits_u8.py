"""Build ``digits-u8``: the digits MLP with uint8 pixels in, for images (p2pai's image kind).

Run from the repository root (needs the ``onnx`` package: ``pip install -e '.[train]'``)::

    python assets/models/make_digits_u8.py

The graph is ``digits.onnx`` with a Cast to float and a Mul by 16/255 folded in front
(netcore/models/folding.py), so an image job sends 64 bytes a digit instead of 256: the
requester resizes each image to 8x8 grayscale (0-255, light ink on a dark ground) and the
graph scales it to the 0-16 of scikit-learn's digits. The script checks that the new graph
gives the same labels as the float one on the held-out samples scaled to 0-255 and back.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from netcore.models.folding import fold_digits_u8  # noqa: E402

MODELS = ROOT / "assets" / "models"
SAMPLES = ROOT / "assets" / "samples" / "digits-test.npz"


def main() -> None:
    source = json.loads((MODELS / "digits.json").read_text(encoding="utf-8"))
    data = fold_digits_u8((MODELS / "digits.onnx").read_bytes())
    (MODELS / "digits-u8.onnx").write_bytes(data)
    manifest = {
        "name": "digits-u8",
        "version": source["version"],
        "file": "digits-u8.onnx",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "description": "digits MLP on uint8 8x8 pixels (0-255, light ink on dark; "
        "x*16/255 folded into the graph): what images of digits run",
        "inputs": [{"name": "pixels", "dtype": "uint8", "shape": [-1, 64]}],
        "outputs": source["outputs"],
        "label_output": source["label_output"],
        "labels": source["labels"],
        "kind": "image-classification",
        "kind_params": {"size": [8, 8]},
        "derived_from": {"file": "digits.onnx", "sha256": source["sha256"]},
    }
    (MODELS / "digits-u8.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    with np.load(SAMPLES) as samples:
        x, y = samples["x"], samples["y"]
    pixels = np.rint(x * 255.0 / 16.0).astype(np.uint8)
    new = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    old = ort.InferenceSession(str(MODELS / "digits.onnx"), providers=["CPUExecutionProvider"])
    got = new.run(["label"], {"pixels": pixels})[0]
    want = old.run(["label"], {"input": x.astype(np.float32)})[0]
    print(
        f"digits-u8.onnx: {len(data)} bytes, sha256 {manifest['sha256'][:12]}, "
        f"accuracy {np.mean(got == y):.4f}, agrees with digits on {np.mean(got == want):.4f}"
    )


if __name__ == "__main__":
    main()
