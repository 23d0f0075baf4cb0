"""The iris plugin: a second real model beside digits, shipped the plugin way.

The model is onnxruntime's own example ``datasets/logreg_iris.onnx`` (a logistic regression
over the four iris measurements), with its input declared [N, 4] (see ``make_iris.py``).
Pre- and post-processing run on the requester:

* ``preprocess`` takes one flower or a list of them, each a list of four numbers or a map
  with ``sepal_length``, ``sepal_width``, ``petal_length``, ``petal_width`` (cm);
* ``postprocess`` gives, per flower, ``{"species": ..., "confidence": ...}``.

The graph's probabilities come out of a ZipMap (a sequence of maps); the worker turns them
into a float32 tensor [N, 3] so they can travel as a tensor (see ``netcore.models.registry``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from netcore.models.plugins import ModelPlugin

SPECIES = ["setosa", "versicolor", "virginica"]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SAMPLES: tuple[tuple[list[float], int], ...] = (
    # Fisher's iris data, the first five flowers of each species (rows 1-5, 51-55, 101-105),
    # with their species; the model gets all fifteen right.
    ([5.1, 3.5, 1.4, 0.2], 0),
    ([4.9, 3.0, 1.4, 0.2], 0),
    ([4.7, 3.2, 1.3, 0.2], 0),
    ([4.6, 3.1, 1.5, 0.2], 0),
    ([5.0, 3.6, 1.4, 0.2], 0),
    ([7.0, 3.2, 4.7, 1.4], 1),
    ([6.4, 3.2, 4.5, 1.5], 1),
    ([6.9, 3.1, 4.9, 1.5], 1),
    ([5.5, 2.3, 4.0, 1.3], 1),
    ([6.5, 2.8, 4.6, 1.5], 1),
    ([6.3, 3.3, 6.0, 2.5], 2),
    ([5.8, 2.7, 5.1, 1.9], 2),
    ([7.1, 3.0, 5.9, 2.1], 2),
    ([6.3, 2.9, 5.6, 1.8], 2),
    ([6.5, 3.0, 5.8, 2.2], 2),
)


def _row(flower: Any) -> list[float]:
    if isinstance(flower, Mapping):
        missing = [f for f in FEATURES if f not in flower]
        if missing:
            raise ValueError(f"a flower needs {', '.join(missing)}")
        values = [flower[f] for f in FEATURES]
    else:
        values = list(flower)
    if len(values) != 4:
        raise ValueError(f"a flower is 4 measurements ({', '.join(FEATURES)}), got {len(values)}")
    row = [float(v) for v in values]
    if not all(math.isfinite(v) for v in row):
        raise ValueError("measurements must be finite numbers")
    return row


def preprocess(raw: Any) -> dict[str, np.ndarray]:
    """One flower or a list of flowers -> ``{"float_input": float32 [N, 4]}``."""
    single = isinstance(raw, Mapping) or (
        isinstance(raw, (list, tuple))
        and bool(raw)
        and not isinstance(raw[0], (list, tuple, Mapping))
    )
    flowers = [raw] if single else list(raw)
    if not flowers:
        raise ValueError("no flower given")
    return {"float_input": np.asarray([_row(f) for f in flowers], dtype=np.float32)}


def postprocess(outputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """The label and probabilities of each flower -> its species and confidence."""
    labels = np.asarray(outputs["label"]).reshape(-1)
    probs = outputs.get("probabilities")
    result = []
    for i, label in enumerate(labels):
        item: dict[str, Any] = {"species": SPECIES[int(label)]}
        if probs is not None and probs.ndim == 2 and probs.shape[0] == len(labels):
            item["confidence"] = round(float(probs[i, int(label)]), 4)
        result.append(item)
    return result


plugin = ModelPlugin(
    name="iris",
    model=Path(__file__).with_name("iris.onnx"),
    manifest={
        "version": "1.0.0",
        "description": "iris species from 4 measurements (onnxruntime's logreg_iris example)",
        "labels": SPECIES,
        "label_output": "label",
    },
    preprocess=preprocess,
    postprocess=postprocess,
    samples=SAMPLES,
)
