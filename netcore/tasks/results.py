"""Each sample's result in a task's outputs: class, label name, confidence, probabilities.

A task carries one sample or a batch of them (``submit --batch N``); its outputs hold one row
per sample. This module cuts them into per-sample results for the output of ``submit``, the
journal and ``p2pai tasks``, with the class names a model's manifest gives (``models add
--labels``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def label_output_of(outputs: Mapping[str, np.ndarray], label_output: str | None) -> str | None:
    """The output holding class indices: the named one, else ``label`` or ``*_label``."""
    if label_output and label_output in outputs:
        return label_output
    for name, arr in outputs.items():
        if (name == "label" or name.endswith("_label")) and np.asarray(arr).dtype.kind in "iu":
            return name
    return None


def probability_output_of(outputs: Mapping[str, np.ndarray]) -> str | None:
    """The output holding class probabilities: ``probabilities`` or ``*_probability``."""
    for name, arr in outputs.items():
        if (name == "probabilities" or name.endswith(("_probability", "_probabilities"))) and (
            np.asarray(arr).dtype.kind == "f"
        ):
            return name
    return None


def label_name(cls: int | None, names: Sequence[str]) -> str | None:
    """The class's name from the model's labels, else the class index as text."""
    if cls is None:
        return None
    return names[cls] if 0 <= cls < len(names) else str(cls)


@dataclass(frozen=True, slots=True)
class Predictions:
    """The outputs of one task, cut into ``count`` rows (one per sample)."""

    count: int
    classes: np.ndarray | None
    """int64 [count], or None when the model has no class output (or its size is off)."""
    probabilities: np.ndarray | None
    """float [count, classes], or None."""
    outputs: Mapping[str, np.ndarray]

    def cls(self, i: int) -> int | None:
        return int(self.classes[i]) if self.classes is not None else None

    def confidence(self, i: int) -> float | None:
        if self.probabilities is None or not self.probabilities.shape[1]:
            return None
        value = float(self.probabilities[i].max())
        return value if np.isfinite(value) else None

    def row(self, i: int) -> dict[str, list[Any]]:
        """Sample ``i``'s slice of every output whose first dimension is ``count``."""
        found = {}
        for name, arr in self.outputs.items():
            a = np.asarray(arr)
            if a.ndim and a.shape[0] == self.count:
                found[name] = np.asarray(a[i]).reshape(-1).tolist()
        return found


def predictions(
    outputs: Mapping[str, np.ndarray] | None, label_output: str | None, count: int
) -> Predictions:
    """Cut a task's outputs into ``count`` per-sample rows; what does not fit is left out."""
    outputs = outputs or {}
    classes = probabilities = None
    name = label_output_of(outputs, label_output)
    if name is not None:
        arr = np.asarray(outputs[name]).reshape(-1)
        if arr.size == count and arr.dtype.kind in "iu":
            classes = arr.astype(np.int64)
    pname = probability_output_of(outputs)
    if pname is not None:
        arr = np.asarray(outputs[pname])
        if count and arr.size and arr.size % count == 0 and (arr.ndim < 2 or arr.shape[0] == count):
            probabilities = arr.reshape(count, -1)
    return Predictions(count, classes, probabilities, outputs)


@dataclass(frozen=True, slots=True)
class SampleResult:
    """One sample's result: numbered from 1 in its run (``sample``), its row of the input
    array (``row``, 0-based like ``x[row]``)."""

    sample: int
    row: int | None
    cls: int | None
    label: str | None
    confidence: float | None
    probabilities: list[float] | None
    """Rounded to 6 decimals, as is ``confidence`` (the highest of them)."""
    expected: int | None
    outputs: dict[str, list[Any]] | None
    """The sample's outputs when the model gives no class (e.g. a regression)."""

    @property
    def right(self) -> bool | None:
        if self.expected is None or self.cls is None:
            return None
        return self.cls == self.expected

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sample": self.sample}
        if self.row is not None:
            data["row"] = self.row
        if self.cls is not None:
            data["label"] = self.label
            data["class"] = self.cls
        if self.confidence is not None:
            data["confidence"] = self.confidence
        if self.probabilities is not None:
            data["probabilities"] = self.probabilities
        if self.expected is not None:
            data["expected"] = self.expected
            data["right"] = self.right
        if self.outputs is not None:
            data["outputs"] = self.outputs
        return data


def sample_results(
    preds: Predictions,
    first: int,
    rows: Sequence[int] | None,
    names: Sequence[str],
    expected: Sequence[int | None] | None = None,
) -> list[SampleResult]:
    """The results of a task whose samples are ``first``.. (0-based in the run), from ``rows``
    of the input (None: not known, e.g. a resumed task whose input file is gone)."""
    # Whole columns at once: a batch of thousands of samples is cut in a few numpy calls.
    count = preds.count
    classes = preds.classes.tolist() if preds.classes is not None else [None] * count
    probs: list[Any] = [None] * count
    confidences: list[Any] = [None] * count
    if preds.probabilities is not None and preds.probabilities.shape[1]:
        p = np.round(preds.probabilities.astype(np.float64), 6)
        probs = p.tolist()
        best = p.max(axis=1)
        confidences = np.where(np.isfinite(best), best, np.nan).tolist()
        confidences = [None if c != c else c for c in confidences]  # NaN: no confidence
    found = []
    for i in range(count):
        cls = classes[i]
        found.append(
            SampleResult(
                sample=first + i + 1,
                row=int(rows[i]) if rows is not None and i < len(rows) else None,
                cls=cls,
                label=label_name(cls, names),
                confidence=confidences[i],
                probabilities=probs[i],
                expected=expected[i] if expected is not None and i < len(expected) else None,
                outputs=preds.row(i) if cls is None else None,
            )
        )
    return found
