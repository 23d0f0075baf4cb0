"""Kind ``tabular``: a row of numbers in, the model's outputs out (``digits``, ``iris``).

An item's value is one sample: a row of a table (``.csv``/``.parquet``/``.jsonl`` columns, a
row of a ``.npy``/``.npz``), or a ``.npy`` file of a folder holding one sample. It is fitted
to the model's single input the way ``submit`` and ``infer`` fit samples
(:mod:`netcore.models.signature`: lossless dtype conversion, ``[8, 8]`` read as ``[64]``).

A classifier (a model with a label output, :attr:`ModelSpec.label_output` or an int output
named ``label``/``*_label``) gives ``label`` (the class's name from the manifest's labels),
``class`` (its index) and ``confidence`` (the highest probability); any other model gives each
output as a list, by output name.

``kind_params``: ``columns``, the table columns that make a row when ``--column`` is not given.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from netcore.models.kinds.base import InputError, Item, Kind, KindError
from netcore.models.signature import SignatureMismatch, fit_array, show_spec

if TYPE_CHECKING:
    from netcore.models.registry import ModelSpec, TensorSpec

CLASSIFIER_FIELDS = ("label", "class", "confidence")


def label_output_of(spec: ModelSpec) -> str | None:
    """The output holding class indices: the manifest's, else an int ``label``/``*_label``."""
    names = {o.name: o for o in spec.outputs}
    if spec.label_output and spec.label_output in names:
        return spec.label_output
    for out in spec.outputs:
        if (out.name == "label" or out.name.endswith("_label")) and out.dtype.startswith(
            ("int", "uint")
        ):
            return out.name
    return None


def probability_output_of(spec: ModelSpec) -> str | None:
    for out in spec.outputs:
        if out.name == "probabilities" or out.name.endswith(("_probability", "_probabilities")):
            return out.name
    return None


class TabularKind(Kind):
    """Rows of numbers fitted to a model's one numeric input."""

    name = "tabular"
    suffixes = frozenset({".npy"})
    """In a folder, each ``.npy`` file is one sample (a table given as INPUT is its rows)."""
    fields = CLASSIFIER_FIELDS
    vote = "label"

    def __init__(self, spec: ModelSpec, params: Mapping[str, Any], **options: Any) -> None:
        super().__init__(spec, params, **options)
        if len(spec.inputs) != 1:
            names = ", ".join(s.name for s in spec.inputs)
            raise KindError(
                f"model {spec.name} takes {len(spec.inputs)} inputs ({names}); a row of numbers "
                "fills a model with one input"
            )
        self.input: TensorSpec = spec.inputs[0]
        if np.dtype(self.input.dtype).kind not in "biuf":
            raise KindError(f"model {spec.name} takes {show_spec(self.input)}, not rows of numbers")
        shape = tuple(self.input.shape or ())
        self._sample_shape: tuple[int, ...] | None = (
            shape[1:] if shape and all(d > 0 for d in shape[1:]) else None
        )
        self._dtype = np.dtype(self.input.dtype)
        self.label_output = label_output_of(spec)
        self.probability_output = probability_output_of(spec)
        columns = self.params.get("columns", ())
        if isinstance(columns, str):
            columns = [columns]
        if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
            raise KindError(f"model {spec.name}: kind_params.columns must be a list of names")
        self.columns: tuple[str, ...] = tuple(columns)
        """The table columns of a row when the job names none."""

    @property
    def classifier(self) -> bool:
        return self.label_output is not None

    def result_fields(self) -> tuple[str, ...]:
        if self.classifier:
            return CLASSIFIER_FIELDS
        return tuple(o.name for o in self.spec.outputs)

    def vote_mode(self) -> str:
        return "label" if self.classifier else "digest"

    # --- pre-processing --------------------------------------------------------------------

    def read(self, item: Item) -> np.ndarray:
        value = item.value
        if value is None:
            value = _load_npy(item)
        if isinstance(value, np.ndarray):
            arr = value
        else:
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError(f"{item.key}: not a row of numbers") from None
        if arr.dtype.kind not in "biuf":
            raise InputError(f"{item.key}: not a row of numbers ({arr.dtype.name} values)")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InputError(f"{item.key}: holds NaN or infinity")
        # The common case first: a row of the model's sample shape and dtype.
        if self._sample_shape is not None and arr.shape == self._sample_shape:
            if arr.dtype == self._dtype:
                return arr.reshape((1, *arr.shape))
            limit = float(np.finfo(self._dtype).max) if self._dtype.kind == "f" else 0.0
            if arr.dtype.kind == "f" and float(np.abs(arr).max(initial=0.0)) <= limit:
                return arr.astype(self._dtype).reshape((1, *arr.shape))
        try:
            fitted, _ = fit_array(self.spec.name, arr, self.input, one_sample=True)
        except SignatureMismatch as exc:
            if self._sample_shape is not None and arr.ndim == 1:
                wanted = math.prod(self._sample_shape)
                raise InputError(
                    f"{item.key}: a row of {arr.size} numbers; model {self.spec.name} takes "
                    f"{wanted} ({show_spec(self.input)})"
                ) from None
            raise InputError(f"{item.key}: {exc}") from None
        if fitted.shape[0] != 1:
            raise InputError(
                f"{item.key}: {fitted.shape[0]} samples where one was expected (one a row)"
            )
        return fitted

    def sample(self, prepared: Any) -> dict[str, np.ndarray]:
        return {self.input.name: prepared}

    # --- post-processing -------------------------------------------------------------------

    def finish(self, prepared: Any, outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if not self.classifier:
            found = {}
            for out in self.spec.outputs:
                if out.name not in outputs:
                    raise InputError(f"the result has no output '{out.name}'")
                found[out.name] = np.asarray(outputs[out.name])[0].reshape(-1).tolist()
            return found
        assert self.label_output is not None
        raw = outputs.get(self.label_output)
        if raw is None:
            raise InputError(f"the result has no output '{self.label_output}'")
        arr = np.asarray(raw).reshape(-1)
        if arr.size != 1 or arr.dtype.kind not in "iu":
            raise InputError(
                f"the result's '{self.label_output}' is {arr.dtype.name} {list(arr.shape)}, "
                "not one class index"
            )
        cls = int(arr[0])
        labels = self.spec.labels
        label = labels[cls] if 0 <= cls < len(labels) else str(cls)
        confidence: float | None = None
        probs = outputs.get(self.probability_output) if self.probability_output else None
        if probs is not None:
            p = np.asarray(probs)
            if p.size and p.dtype.kind == "f":
                best = float(p.reshape(-1).max())
                confidence = round(best, 6) if math.isfinite(best) else None
        return {"label": label, "class": cls, "confidence": confidence}

    def same_result(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        if self.classifier:
            return a.get("class") == b.get("class") and a.get("label") == b.get("label")
        return super().same_result(a, b)


def _load_npy(item: Item) -> np.ndarray:
    """A ``.npy`` file holding one sample (a file of a folder job)."""
    data = item.read_bytes()
    if not data.startswith(b"\x93NUMPY"):
        raise InputError(f"{item.key}: not a .npy array")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(f"{item.key}: holds Python objects, not numbers") from None
        raise InputError(f"{item.key}: not a readable .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{item.key}: not a readable .npy array ({exc})") from None
    return np.asarray(arr)


KIND = TabularKind
