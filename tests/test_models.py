"""Unit tests for the model registry: the shipped digits model, manifests and their checks."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netcore.models.registry import (
    InputMismatch,
    LoadedModel,
    ModelError,
    ModelRegistry,
    TensorSpec,
    assets_dir,
    load_manifest,
    load_samples,
    sha256_file,
)
from netcore.wire import protocol

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "assets" / "models"
MANIFEST = MODELS / "digits.json"
ONNX = MODELS / "digits.onnx"
SAMPLES = REPO / "assets" / "samples" / "digits-test.npz"


@pytest.fixture(scope="module")
def digits() -> LoadedModel:
    return LoadedModel(load_manifest(MANIFEST))


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """The digits manifest and model copied into tmp_path; returns the manifest path."""
    shutil.copy(MANIFEST, tmp_path / "digits.json")
    shutil.copy(ONNX, tmp_path / "digits.onnx")
    return tmp_path / "digits.json"


def rewrite(manifest: Path, **changes: Any) -> dict[str, Any]:
    data = json.loads(manifest.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    manifest.write_text(json.dumps(data))
    return data


# --- the shipped model ---------------------------------------------------------------------


def test_assets_dir_is_the_source_tree() -> None:
    assert (assets_dir() / "models" / "digits.json").is_file()


def test_digits_manifest_loads() -> None:
    spec = load_manifest(MANIFEST)
    assert spec.name == "digits"
    assert spec.path == ONNX
    assert spec.size == ONNX.stat().st_size
    assert spec.inputs == [TensorSpec("input", "float32", (-1, 64))]
    assert [o.name for o in spec.outputs] == ["label", "probabilities"]
    assert spec.label_output == "label"
    assert spec.labels == [str(i) for i in range(10)]


def test_digits_sha256_matches_the_file() -> None:
    spec = load_manifest(MANIFEST)
    assert spec.sha256 == hashlib.sha256(ONNX.read_bytes()).hexdigest()
    assert sha256_file(ONNX) == spec.sha256


def test_digits_wire_entry_is_a_valid_hello_model() -> None:
    entry = load_manifest(MANIFEST).wire_entry()
    assert entry["inputs"] == [{"name": "input", "dtype": "float32", "shape": [-1, 64]}]
    assert entry["label_output"] == "label"
    hello = {
        "t": "hello",
        "id": bytes(16),
        "name": "n",
        "net": "default",
        "caps": ["infer"],
        "endpoints": [],
        "models": [entry],
    }
    assert protocol.decode(protocol.encode(hello))["models"] == [entry]


def test_digits_accuracy_on_the_shipped_samples(digits: LoadedModel) -> None:
    x, y = load_samples(SAMPLES)
    assert y is not None
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == 64
    assert len(x) == len(y) >= 100
    out = digits.run({"input": x})
    assert set(out) == {"label", "probabilities"}
    labels, probs = out["label"], out["probabilities"]
    assert labels.shape == (len(x),) and labels.dtype == np.int64
    assert probs.shape == (len(x), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    assert np.array_equal(labels, probs.argmax(axis=1))
    accuracy = float((labels == y).mean())
    assert accuracy >= 0.95, accuracy


def test_digits_single_sample_runs(digits: LoadedModel) -> None:
    x, _ = load_samples(SAMPLES)
    out = digits.run({"input": x[:1]})
    assert out["label"].shape == (1,)
    assert out["probabilities"].shape == (1, 10)


def test_default_samples_load() -> None:
    x, y = load_samples()
    assert x.shape[1] == 64 and y is not None


def test_samples_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        load_samples(tmp_path / "missing.npz")
    np.savez(tmp_path / "nox.npz", y=np.arange(3))
    with pytest.raises(ModelError):
        load_samples(tmp_path / "nox.npz")
    np.save(tmp_path / "plain.npy", np.ones((3, 64)))
    x, y = load_samples(tmp_path / "plain.npy")
    assert x.shape == (3, 64) and x.dtype == np.float32 and y is None


# --- check_inputs --------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 2, 50])
def test_check_inputs_accepts_any_batch(rows: int) -> None:
    load_manifest(MANIFEST).check_inputs({"input": np.zeros((rows, 64), dtype=np.float32)})


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param({"x": np.zeros((1, 64), np.float32)}, id="wrong-name"),
        pytest.param({}, id="no-inputs"),
        pytest.param(
            {"input": np.zeros((1, 64), np.float32), "extra": np.zeros(1, np.float32)},
            id="extra-input",
        ),
        pytest.param({"input": np.zeros((1, 64), np.float64)}, id="float64"),
        pytest.param({"input": np.zeros((1, 64), np.int64)}, id="int64"),
        pytest.param({"input": np.zeros((1, 64), np.float16)}, id="float16"),
        pytest.param({"input": np.zeros((1, 63), np.float32)}, id="63-columns"),
        pytest.param({"input": np.zeros((1, 65), np.float32)}, id="65-columns"),
        pytest.param({"input": np.zeros((64,), np.float32)}, id="1-d"),
        pytest.param({"input": np.zeros((1, 1, 64), np.float32)}, id="3-d"),
        pytest.param({"input": np.zeros((), np.float32)}, id="0-d"),
        pytest.param({"input": np.zeros((0, 64), np.float32)}, id="no-rows"),
    ],
)
def test_check_inputs_rejects(inputs: dict[str, np.ndarray]) -> None:
    with pytest.raises(InputMismatch) as info:
        load_manifest(MANIFEST).check_inputs(inputs)
    assert str(info.value)


def test_check_inputs_message_names_the_problem() -> None:
    spec = load_manifest(MANIFEST)
    with pytest.raises(InputMismatch, match="float32"):
        spec.check_inputs({"input": np.zeros((1, 64), np.float64)})
    with pytest.raises(InputMismatch, match="64"):
        spec.check_inputs({"input": np.zeros((1, 3), np.float32)})
    with pytest.raises(InputMismatch, match="input"):
        spec.check_inputs({"x": np.zeros((1, 64), np.float32)})


# --- load_manifest errors ------------------------------------------------------------------


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nope\.json"):
        load_manifest(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "text",
    ["{", "", "not json", '{"name": "digits",}', "\xff\xfe"],
    ids=["open-brace", "empty", "words", "trailing-comma", "not-utf8"],
)
def test_bad_json(model_copy: Path, text: str) -> None:
    model_copy.write_bytes(text.encode("latin-1"))
    with pytest.raises(ModelError, match=r"digits\.json"):
        load_manifest(model_copy)


@pytest.mark.parametrize("text", ["[]", "42", '"digits"', "null"])
def test_manifest_that_is_not_an_object(model_copy: Path, text: str) -> None:
    model_copy.write_text(text)
    with pytest.raises(ModelError):
        load_manifest(model_copy)


@pytest.mark.parametrize(
    "sha",
    ["", "ab" * 31, "ab" * 33, "zz" * 32, "ab" * 31 + "a ", 12345],
    ids=["empty", "short", "long", "not-hex", "space", "number"],
)
def test_bad_sha256(model_copy: Path, sha: Any) -> None:
    rewrite(model_copy, sha256=sha)
    with pytest.raises(ModelError, match="sha256"):
        load_manifest(model_copy)


def test_uppercase_sha256_is_accepted(model_copy: Path) -> None:
    data = rewrite(model_copy)
    rewrite(model_copy, sha256=data["sha256"].upper())
    assert load_manifest(model_copy).sha256 == data["sha256"]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"name": None}, id="no-name"),
        pytest.param({"sha256": None}, id="no-sha256"),
        pytest.param({"inputs": None}, id="no-inputs"),
        pytest.param({"inputs": []}, id="empty-inputs"),
        pytest.param({"inputs": [{"dtype": "float32", "shape": [1]}]}, id="input-no-name"),
        pytest.param({"inputs": [{"name": "input", "dtype": "float32"}]}, id="input-no-shape"),
        pytest.param({"inputs": [{"name": "input", "shape": ["N", 64]}]}, id="input-str-dim"),
        pytest.param({"outputs": "label"}, id="outputs-str"),
        pytest.param({"file": "missing.onnx"}, id="missing-onnx"),
        pytest.param({"file": "missing.onnx", "size": None}, id="missing-onnx-no-size"),
        pytest.param({"size": "big"}, id="size-not-a-number"),
        pytest.param({"size": [1]}, id="size-list"),
        pytest.param({"labels": 10}, id="labels-not-a-list"),
    ],
)
def test_bad_manifest_fields(model_copy: Path, changes: dict[str, Any]) -> None:
    rewrite(model_copy, **changes)
    with pytest.raises(ModelError) as info:
        load_manifest(model_copy)
    assert "digits.json" in str(info.value)


def test_changed_model_file_is_refused_at_load(model_copy: Path) -> None:
    onnx = model_copy.parent / "digits.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx.write_bytes(bytes(data))
    spec = load_manifest(model_copy)  # the manifest itself is fine
    with pytest.raises(ModelError, match="sha256") as info:
        LoadedModel(spec)
    assert "digits" in str(info.value)
    with pytest.raises(ModelError, match="sha256"):
        ModelRegistry([model_copy.parent]).load(spec)


def test_unloadable_model_file_is_a_model_error(model_copy: Path) -> None:
    onnx = model_copy.parent / "digits.onnx"
    onnx.write_bytes(b"this is not an onnx model")
    rewrite(model_copy, sha256=sha256_file(onnx), size=onnx.stat().st_size)
    with pytest.raises(ModelError, match="onnxruntime"):
        LoadedModel(load_manifest(model_copy))


# --- registry --------------------------------------------------------------------------------


def test_registry_finds_models_and_skips_bad_manifests(model_copy: Path) -> None:
    folder = model_copy.parent
    (folder / "broken.json").write_text("{")
    (folder / "odd.json").write_text(
        json.dumps({**json.loads(model_copy.read_text()), "name": "odd", "size": "x"})
    )
    registry = ModelRegistry([folder, folder / "does-not-exist"])
    assert registry.names() == ["digits"]
    spec = registry.find("digits")
    assert spec is not None
    assert registry.find("digits", spec.sha256) is spec
    assert registry.find("digits", "cd" * 32) is None
    assert registry.find("nothing") is None
    assert [e["name"] for e in registry.wire_entries()] == ["digits"]


def test_registry_keeps_one_entry_per_version_and_loads_once(model_copy: Path) -> None:
    registry = ModelRegistry([MODELS, model_copy.parent])  # the same model twice
    assert len([s for s in registry.specs() if s.name == "digits"]) == 1
    spec = registry.find("digits")
    assert spec is not None
    assert registry.load(spec) is registry.load(spec)
