"""Inputs fitted to a model's signature on the requester (netcore.models.signature)."""

from __future__ import annotations

import numpy as np
import pytest

from netcore.models.registry import TensorSpec
from netcore.models.signature import (
    SignatureMismatch,
    advertised_signature,
    fit_array,
    fit_inputs,
    fit_samples,
)

DIGITS = [TensorSpec("input", "float32", (-1, 64))]


def test_a_3d_file_is_flattened_per_sample_and_said() -> None:
    """[500, 8, 8] was reshaped into [4000, 8] and every task failed on the workers."""
    x = np.arange(500 * 64, dtype=np.float64).reshape(500, 8, 8)
    fitted, notes = fit_samples("digits", x, DIGITS)
    assert fitted.shape == (500, 64) and fitted.dtype == np.float32
    assert np.array_equal(fitted[3], x[3].reshape(64))
    assert notes == [
        "input 'input' of model digits: samples of shape [8, 8] read as [64] (flattened row by row)"
    ]


def test_a_shape_that_does_not_fit_names_expected_and_given() -> None:
    with pytest.raises(SignatureMismatch) as err:
        fit_samples("digits", np.zeros((500, 13)), DIGITS)
    assert str(err.value) == (
        "input 'input' of model digits: expected float32 [N, 64], given float64 [500, 13]"
    )
    with pytest.raises(SignatureMismatch, match=r"given float32 \[500, 8, 7\]"):
        fit_samples("digits", np.zeros((500, 8, 7), np.float32), DIGITS)


def test_lossless_dtype_conversions_are_done() -> None:
    spec = TensorSpec("x", "float32", (-1, 2))
    for given in (np.float64, np.float16, np.int64, np.uint8, np.bool_):
        arr, note = fit_array("m", np.ones((3, 2), given), spec)
        assert arr.dtype == np.float32 and note is None
    arr, _ = fit_array("m", np.array([[1.0, 2.0]]), TensorSpec("ids", "int64", (-1, 2)))
    assert arr.dtype == np.int64 and arr.tolist() == [[1, 2]]
    arr, _ = fit_array("m", np.array([[1, 300]]), TensorSpec("ids", "int16", (-1, 2)))
    assert arr.dtype == np.int16


@pytest.mark.parametrize(
    ("values", "dtype", "reason"),
    [
        (np.array([[1e300, 0.0]]), "float32", "values beyond float32's range"),
        (np.array([[2**40 + 1, 0]]), "float32", "values float32 cannot hold exactly"),
        (np.array([[1.5, 2.0]]), "int64", "values that are not whole numbers"),
        (np.array([[70000, 0]]), "int16", "values beyond int16's range"),
        (np.array([["a", "b"]]), "float32", "not numbers"),
        (np.array([[2, 0]]), "bool", "values other than 0 and 1"),
    ],
)
def test_lossy_conversions_are_refused(values: np.ndarray, dtype: str, reason: str) -> None:
    with pytest.raises(SignatureMismatch) as err:
        fit_array("m", values, TensorSpec("x", dtype, (-1, 2)))
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_nan_and_inf_narrow_to_float32() -> None:
    arr, _ = fit_array("m", np.array([[np.nan, np.inf]]), TensorSpec("x", "float32", (-1, 2)))
    assert np.isnan(arr[0, 0]) and np.isinf(arr[0, 1])


def test_one_flat_sample_is_one_sample_for_infer_only() -> None:
    fitted = fit_inputs("digits", {"input": [0.5] * 64}, DIGITS, one_sample=True)
    assert fitted.inputs["input"].shape == (1, 64) and not fitted.notes
    fitted = fit_inputs("digits", {"input": np.zeros((8, 8))}, DIGITS, one_sample=True)
    assert (
        fitted.inputs["input"].shape == (1, 64) and "one sample of shape [8, 8]" in fitted.notes[0]
    )
    with pytest.raises(SignatureMismatch):
        fit_samples("digits", np.zeros(64), DIGITS)


def test_a_rank_one_model_takes_a_flat_list_as_n_samples() -> None:
    arr, note = fit_array("double", np.array([4.0, 5.0]), TensorSpec("x", "float32", (-1,)), True)
    assert arr.shape == (2,) and note is None


def test_a_symbolic_sample_size_is_never_guessed() -> None:
    spec = TensorSpec("tokens", "int64", (-1, -1))
    arr, _ = fit_array("m", np.ones((2, 7), np.int64), spec)
    assert arr.shape == (2, 7)
    with pytest.raises(SignatureMismatch, match=r"expected int64 \[N, N\]"):
        fit_array("m", np.ones((2, 7, 3), np.int64), spec)


def test_names_and_ragged_values() -> None:
    two = [TensorSpec("a", "float32", (-1, 1)), TensorSpec("b", "float32", (-1, 1))]
    with pytest.raises(SignatureMismatch) as err:
        fit_inputs("pair", {"a": [[1.0]]}, two)
    assert str(err.value) == "model pair takes inputs 'a', 'b'; given 'a'"
    with pytest.raises(SignatureMismatch, match="not a rectangular array"):
        fit_inputs("digits", {"input": [[1.0, 2.0], [3.0]]}, DIGITS)
    with pytest.raises(SignatureMismatch, match="takes 2 inputs"):
        fit_samples("pair", np.zeros((3, 1)), two)
    with pytest.raises(SignatureMismatch, match="empty"):
        fit_samples("digits", np.zeros((0, 64)), DIGITS)


def test_a_peers_advertised_signature() -> None:
    entry = {"name": "m", "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]}
    assert advertised_signature(entry) == [TensorSpec("x", "float32", (-1, 4))]
    for bad in (
        {"inputs": []},
        {"inputs": [{"name": "x"}]},
        {"inputs": [{"name": "x", "dtype": "float32", "shape": ["N"]}]},
        {"inputs": [{"name": "x", "dtype": "nosuch", "shape": [1]}]},
        {"inputs": [{"name": "x", "dtype": "float32", "shape": [True]}]},
    ):
        assert advertised_signature(bad) is None
