"""Helpers for the job tests: the real shipped models, and an in-process Infer over
onnxruntime (one layer: no node, no network)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from netcore.config.settings import Config
from netcore.models.plugins import load_registry
from netcore.models.registry import ModelSpec

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "assets" / "samples" / "digits-test.npz"


def spec_of(tmp_path: Path, name: str) -> ModelSpec:
    spec = load_registry(Config(data_dir=tmp_path / "models-dir")).find(name)
    assert spec is not None
    return spec


def tabular_spec(tmp_path: Path, name: str) -> ModelSpec:
    """A shipped model read as rows of numbers (the tabular kind), whatever its manifest's kind
    (digits is an image classifier that also takes rows)."""
    spec = spec_of(tmp_path, name)
    spec.kind, spec.kind_params = None, {}
    return spec


def digits_samples() -> tuple[np.ndarray, np.ndarray]:
    with np.load(SAMPLES) as data:
        return np.asarray(data["x"]), np.asarray(data["y"])


class OrtInfer:
    """An Infer that runs the model here, counting calls and rows; with ``jitter`` each call
    waits a random moment first, so calls finish out of order."""

    def __init__(self, spec: ModelSpec, jitter: float = 0.0, seed: int = 0) -> None:
        self.session = ort.InferenceSession(str(spec.path), providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]
        self.jitter = jitter
        self.random = random.Random(seed)
        self.calls = 0
        self.rows = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail_rows: set[int] = set()
        """Call numbers (from 1) that raise InputError, as a failed task would."""

    async def __call__(self, model: str, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        from netcore.models.kinds.base import InputError

        self.calls += 1
        number = self.calls
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.jitter:
                await asyncio.sleep(self.random.random() * self.jitter)
            if number in self.fail_rows:
                raise InputError("timeout: no worker with this model answered in time")
            self.rows += next(iter(inputs.values())).shape[0]
            out = self.session.run(None, dict(inputs))
            return dict(zip(self.names, out, strict=True))
        finally:
            self.in_flight -= 1
