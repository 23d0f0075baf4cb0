"""The tabular kind: rows of numbers fitted to a model's one input, results by class name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from job_helpers import OrtInfer, digits_samples, spec_of, tabular_spec

from netcore.models.kinds import InputError, Item, KindError, kind_for
from netcore.models.kinds.tabular import TabularKind
from netcore.models.registry import ModelSpec, TensorSpec


def test_digits_rows_are_fitted_and_classified(tmp_path: Path) -> None:
    spec = tabular_spec(tmp_path, "digits")
    kind = kind_for(spec)
    assert isinstance(kind, TabularKind) and kind.result_fields() == (
        "label",
        "class",
        "confidence",
    )
    assert kind.vote_mode() == "label"
    x, y = digits_samples()
    as_list = kind.read(Item("1", value=[float(v) for v in x[0]]))
    as_square = kind.read(Item("2", value=x[1].reshape(8, 8).astype(np.float64)))
    assert as_list.shape == as_square.shape == (1, 64) and as_list.dtype == np.float32
    infer = OrtInfer(spec)

    async def run(prepared: np.ndarray) -> dict[str, object]:
        return await kind.run(prepared, infer)

    import asyncio

    first = asyncio.run(run(as_list))
    assert first["class"] == int(y[0]) and first["label"] == str(y[0])
    assert isinstance(first["confidence"], float) and 0 < first["confidence"] <= 1


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([1.0] * 63, r"a row of 63 numbers; model digits takes 64 \(float32 \[N, 64\]\)"),
        ([float("nan")] * 64, "NaN or infinity"),
        (["a"] * 64, "not a row of numbers"),
        (np.zeros((2, 64)), "2 samples where one was expected"),
    ],
)
def test_a_row_that_does_not_fit_is_that_items_error(
    tmp_path: Path, value: object, words: str
) -> None:
    kind = kind_for(tabular_spec(tmp_path, "digits"))
    with pytest.raises(InputError, match=words) as err:
        kind.read(Item("7", value=value))
    assert str(err.value).startswith("7: ")


def test_iris_names_the_species(tmp_path: Path) -> None:
    import asyncio

    spec = spec_of(tmp_path, "iris")
    kind = kind_for(spec)
    infer = OrtInfer(spec)
    fields = asyncio.run(kind.run(kind.read(Item("1", value=[6.3, 3.3, 6.0, 2.5])), infer))
    assert fields["label"] == "virginica" and fields["class"] == 2


def test_a_result_without_the_label_output_is_an_error(tmp_path: Path) -> None:
    kind = kind_for(tabular_spec(tmp_path, "digits"))
    with pytest.raises(InputError, match="no output 'label'"):
        kind.finish(None, {"probabilities": np.ones((1, 10), np.float32)})
    with pytest.raises(InputError, match="not one class index"):
        kind.finish(None, {"label": np.array([1.5], np.float32)})


def test_a_model_that_is_no_classifier_gives_its_outputs(tmp_path: Path) -> None:
    base = tabular_spec(tmp_path, "digits")
    spec = ModelSpec(
        "regress", "1", base.sha256, base.size, base.path,
        [TensorSpec("x", "float32", (-1, 3))], [TensorSpec("y", "float32", None)],
    )  # fmt: skip
    kind = kind_for(spec)
    assert kind.result_fields() == ("y",) and kind.vote_mode() == "digest"
    assert kind.finish(None, {"y": np.array([[1.5, 2.5]], np.float32)}) == {"y": [1.5, 2.5]}


def test_a_model_with_two_inputs_is_refused(tmp_path: Path) -> None:
    base = tabular_spec(tmp_path, "digits")
    spec = ModelSpec(
        "two", "1", base.sha256, base.size, base.path,
        [TensorSpec("a", "float32", (-1, 3)), TensorSpec("b", "float32", (-1, 3))], [],
    )  # fmt: skip
    with pytest.raises(KindError, match="takes 2 inputs"):
        kind_for(spec)


def test_a_folder_npy_file_is_one_sample(tmp_path: Path) -> None:
    kind = kind_for(tabular_spec(tmp_path, "digits"))
    x, _ = digits_samples()
    path = tmp_path / "one.npy"
    np.save(path, x[0].reshape(8, 8))
    assert kind.accepts(path) and not kind.accepts(tmp_path / "a.png")
    assert kind.read(Item("one.npy", path=path)).shape == (1, 64)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(InputError, match=r"not a \.npy array"):
        kind.read(Item("bad.npy", path=bad))
