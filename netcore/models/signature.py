"""Inputs fitted to a model's signature on the requester, before anything is sent.

A model's signature is its input specs (:class:`~netcore.models.registry.TensorSpec`: name,
dtype, shape with ``-1`` for a symbolic size such as ``N``). The requester checks what the
user gave against it, so that a mismatch is one line at once instead of a ``bad_input`` from
every worker, task after task. What is fitted for the user, and nothing else:

* **dtypes**, when nothing is lost: float64 to float32 (values within float32's range; the
  rounding is what float32 means), ints and bools to floats that hold them exactly, ints to
  narrower ints that hold them, whole floats to ints (JSON ``[1, 2]`` vs ``[1.0, 2.0]``);
* **one sample** without its batch axis (``[64]`` for ``[N, 64]``), when ``one_sample`` is
  allowed (``infer``);
* **a sample shape that matches after flattening** (``[N, 8, 8]`` read as ``[N, 64]``, row by
  row) or the reverse, when every size after the first is fixed. This one is said: it is
  returned as a note for the caller to print.

Anything else raises :class:`SignatureMismatch`, whose message names what the model expects
and what was given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netcore.models.registry import TensorSpec


class SignatureMismatch(Exception):
    """Inputs that do not fit the model's signature; the message is one line."""


@dataclass(slots=True)
class Fitted:
    """Inputs converted to the signature, and what was changed that the user should hear."""

    inputs: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)


def show_shape(shape: Sequence[int] | None) -> str:
    """``(-1, 64)`` as ``[N, 64]`` (the way ``models show`` prints a signature)."""
    return "[" + ", ".join("N" if d == -1 else str(d) for d in (shape or ())) + "]"


def show_spec(spec: TensorSpec) -> str:
    return f"{spec.dtype} {show_shape(spec.shape)}"


def show_array(arr: np.ndarray) -> str:
    return f"{arr.dtype.name} {list(arr.shape)}".replace("'", "")


def advertised_signature(entry: Mapping[str, Any]) -> list[TensorSpec] | None:
    """The input specs of a model entry a peer advertised in ``hello``, or None when they are
    missing or malformed (the wire only checks that each input has a name)."""
    raw = entry.get("inputs")
    if not isinstance(raw, list) or not raw:
        return None
    specs = []
    for item in raw:
        if not isinstance(item, Mapping):
            return None
        name, dtype, shape = item.get("name"), item.get("dtype"), item.get("shape")
        if not isinstance(name, str) or not isinstance(dtype, str) or not isinstance(shape, list):
            return None
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape):
            return None
        try:
            np.dtype(dtype)
        except TypeError:
            return None
        specs.append(TensorSpec(name, dtype, tuple(shape)))
    return specs


def fit_inputs(
    model: str,
    inputs: Mapping[str, Any],
    signature: Sequence[TensorSpec],
    *,
    one_sample: bool = False,
) -> Fitted:
    """``inputs`` (arrays or nested lists by input name) fitted to ``signature``."""
    wanted = [s.name for s in signature]
    if set(inputs) != set(wanted):
        raise SignatureMismatch(
            f"model {model} takes input{'s' if len(wanted) > 1 else ''} {_names(wanted)}; "
            f"given {_names(sorted(map(str, inputs))) or 'none'}"
        )
    fitted = Fitted({})
    for spec in signature:
        arr, note = fit_array(
            model, as_array(model, spec.name, inputs[spec.name]), spec, one_sample
        )
        fitted.inputs[spec.name] = arr
        if note:
            fitted.notes.append(note)
    return fitted


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def as_array(model: str, name: str, value: Any) -> np.ndarray:
    """``value`` as a numpy array; ragged lists are one line, not numpy's traceback."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        raise SignatureMismatch(
            f"input '{name}' of model {model}: the values are not a rectangular array"
        ) from None


def fit_array(
    model: str, arr: np.ndarray, spec: TensorSpec, one_sample: bool = False
) -> tuple[np.ndarray, str | None]:
    """``arr`` converted to ``spec``'s dtype and shape, and a note when it was reshaped."""
    where = f"input '{spec.name}' of model {model}"
    mismatch = f"{where}: expected {show_spec(spec)}, given {show_array(arr)}"
    shaped, note = _fit_shape(arr, spec, one_sample, where)
    if shaped is None:
        raise SignatureMismatch(mismatch)
    if shaped.size == 0:
        raise SignatureMismatch(f"{where}: given an empty array {list(arr.shape)}")
    reason = _lossless(shaped, np.dtype(spec.dtype))
    if reason is not None:
        raise SignatureMismatch(f"{mismatch} ({reason})")
    return np.ascontiguousarray(shaped, dtype=spec.dtype), note


def _matches(shape: Sequence[int], want: Sequence[int]) -> bool:
    return len(shape) == len(want) and all(w in (-1, g) for w, g in zip(want, shape, strict=True))


def _fit_shape(
    arr: np.ndarray, spec: TensorSpec, one_sample: bool, where: str
) -> tuple[np.ndarray | None, str | None]:
    want = tuple(spec.shape or ())
    if _matches(arr.shape, want):
        return arr, None
    sample = want[1:]
    if one_sample and want and _matches(arr.shape, sample):
        return arr.reshape((1, *arr.shape)), None
    if not want or any(d <= 0 for d in sample):
        return None, None  # a scalar input, or a symbolic size after the first: no guessing
    per_sample = math.prod(sample)
    given = f"samples of shape {list(arr.shape[1:])}"
    if arr.ndim >= 1 and math.prod(arr.shape[1:]) == per_sample and want[0] in (-1, arr.shape[0]):
        if arr.ndim == 1 and per_sample != 1:
            return None, None
        note = f"{where}: {given} read as {show_shape(sample)} (flattened row by row)"
        return arr.reshape((arr.shape[0], *sample)), note
    if one_sample and arr.size == per_sample and want[0] in (-1, 1):
        note = f"{where}: one sample of shape {list(arr.shape)} read as {show_shape(sample)}"
        return arr.reshape((1, *sample)), note
    return None, None


def _lossless(arr: np.ndarray, target: np.dtype[Any]) -> str | None:
    """Why converting ``arr`` to ``target`` would lose something, or None when it would not."""
    src = arr.dtype
    if src == target:
        return None
    if src.kind not in "biuf":
        return "not numbers" if src.kind in "USO" else f"{src.name} values"
    if target.kind not in "biuf":
        return f"the model takes {target.name}"
    if target.kind == "f":
        if src.kind == "f":
            if target.itemsize >= src.itemsize:
                return None
            finite = arr[np.isfinite(arr)]
            limit = float(np.finfo(target).max)
            if finite.size and float(np.abs(finite).max()) > limit:
                return f"values beyond {target.name}'s range"
            return None
        converted = arr.astype(target)
        if not np.array_equal(converted.astype(src), arr):
            return f"values {target.name} cannot hold exactly"
        return None
    if src.kind == "f" and not (np.isfinite(arr).all() and np.array_equal(np.trunc(arr), arr)):
        return f"values that are not whole numbers; the model takes {target.name}"
    if target.kind == "b":
        return None if np.isin(arr, (0, 1)).all() else "values other than 0 and 1"
    info = np.iinfo(target)
    low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if low < info.min or high > info.max:
        return f"values beyond {target.name}'s range"
    return None


def fit_samples(
    model: str, x: np.ndarray, signature: Sequence[TensorSpec]
) -> tuple[np.ndarray, list[str]]:
    """Samples for ``submit`` (one a row, for a model with one input) fitted to ``signature``."""
    if len(signature) != 1:
        names = ", ".join(s.name for s in signature)
        raise SignatureMismatch(
            f"model {model} takes {len(signature)} inputs ({names}); submit sends samples to "
            "models with one input (infer takes {input name: values})"
        )
    arr, note = fit_array(model, x, signature[0])
    return arr, [note] if note else []
