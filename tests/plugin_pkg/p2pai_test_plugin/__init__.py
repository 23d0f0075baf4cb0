"""A p2pai model plugin: 'double' doubles numbers given as text.

``preprocess`` reads text such as ``"1, 2.5, 4"`` into the model's float32 input; the model
(ONNX, shipped in this package and handed over as bytes) doubles each number on a worker;
``postprocess`` writes the doubled numbers back as text. Both run on the requester.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from typing import Any

import numpy as np

from netcore.models import ModelPlugin

CALLS = {"preprocess": 0, "postprocess": 0}
"""How often each hook ran in this process (the tests check that they did)."""


def preprocess(raw: Any) -> dict[str, np.ndarray]:
    CALLS["preprocess"] += 1
    numbers = [float(part) for part in str(raw).replace(",", " ").split()]
    if not numbers:
        raise ValueError("no number in the text")
    return {"x": np.asarray(numbers, dtype=np.float32)}


def postprocess(outputs: Mapping[str, np.ndarray]) -> str:
    CALLS["postprocess"] += 1
    return " ".join(f"{v:g}" for v in outputs["y"].reshape(-1).tolist())


plugin = ModelPlugin(
    name="double",
    model=files(__name__).joinpath("double.onnx").read_bytes(),
    manifest={"version": "0.1.0", "description": "y = 2x, numbers as text"},
    preprocess=preprocess,
    postprocess=postprocess,
)
