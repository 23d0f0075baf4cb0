"""The model registry and store: add/list/show/remove round trips, versions, bad files, and
the `p2pai models` commands (one clear line on every error)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from onnx_bytes import scale_model

from netcore.cli.root import cli
from netcore.config.settings import Config
from netcore.models.plugins import load_registry
from netcore.models.registry import (
    LoadedModel,
    ModelError,
    ModelRegistry,
    sha256_file,
    zipmap_to_tensor,
)
from netcore.models.store import add_model, inspect_onnx, read_labels, remove_models, stored_models

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "assets" / "models" / "digits.onnx"
IRIS = REPO / "netcore" / "models" / "bundled" / "iris.onnx"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "models"


def test_add_reads_the_graph_and_round_trips(tmp_path: Path, models_dir: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"digit {i}" for i in range(10)) + "\n")
    spec = add_model(
        models_dir,
        DIGITS,
        name="mydigits",
        version="2.1",
        labels=read_labels(labels),
        description="a copy",
    )
    assert spec.name == "mydigits" and spec.version == "2.1" and spec.source == "user"
    assert spec.sha256 == sha256_file(DIGITS)
    assert spec.path == models_dir / f"mydigits-{spec.sha256[:12]}.onnx"
    assert [(s.name, s.dtype, s.shape) for s in spec.inputs] == [("input", "float32", (-1, 64))]
    assert [(s.name, s.dtype) for s in spec.outputs] == [
        ("label", "int64"),
        ("probabilities", "float32"),
    ]
    assert spec.label_output == "label"
    assert spec.labels[3] == "digit 3"
    # A registry over the folder finds it, loads it, runs it.
    registry = ModelRegistry([models_dir])
    found = registry.find("mydigits")
    assert found is not None and found.sha256 == spec.sha256
    out = registry.load(found).run({"input": np.zeros((2, 64), dtype=np.float32)})
    assert out["label"].shape == (2,)
    # Adding the same file again is idempotent.
    assert add_model(models_dir, DIGITS, name="mydigits", version="2.1").sha256 == spec.sha256
    assert len(stored_models(models_dir)) == 1
    # Remove deletes the manifest and the file.
    assert [s.sha256 for s in remove_models(models_dir, "mydigits")] == [spec.sha256]
    assert list(models_dir.iterdir()) == []


def test_two_versions_of_a_name_coexist(tmp_path: Path, models_dir: Path) -> None:
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    first.write_bytes(scale_model(2.0))
    second.write_bytes(scale_model(3.0))
    v1 = add_model(models_dir, first, name="scale", version="1")
    v2 = add_model(models_dir, second, name="scale", version="2")
    assert v1.sha256 != v2.sha256
    registry = ModelRegistry([models_dir])
    assert {s.version for s in registry.specs() if s.name == "scale"} == {"1", "2"}
    for spec, factor in ((v1, 2.0), (v2, 3.0)):
        held = registry.find("scale", spec.sha256)
        assert held is not None
        y = registry.load(held).run({"x": np.ones(2, dtype=np.float32)})["y"]
        np.testing.assert_allclose(y, [factor, factor])
    remove_models(models_dir, "scale", v1.sha256[:8])
    assert [s.version for _, s in stored_models(models_dir)] == ["2"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not an onnx file at all", "not a model onnxruntime can load"),
        (b"", "not a model onnxruntime can load"),
        (scale_model()[:40], "not a model onnxruntime can load"),
    ],
    ids=["garbage", "empty", "truncated"],
)
def test_bad_files_are_rejected_with_one_line(
    tmp_path: Path, models_dir: Path, content: bytes, expected: str
) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(ModelError) as exc:
        add_model(models_dir, bad)
    assert expected in str(exc.value) and "\n" not in str(exc.value)
    assert not models_dir.exists() or list(models_dir.iterdir()) == []


def test_bad_names_labels_and_missing_files(tmp_path: Path, models_dir: Path) -> None:
    with pytest.raises(ModelError, match="no such file"):
        add_model(models_dir, tmp_path / "nope.onnx")
    for name in ("../up", ".hidden", "a/b", ""):
        with pytest.raises(ModelError, match="model name"):
            add_model(models_dir, DIGITS, name=name)
    with pytest.raises(ModelError, match="is not an output"):
        add_model(models_dir, DIGITS, label_output="nope")
    labels = tmp_path / "labels.json"
    labels.write_text('{"a": 1}')
    with pytest.raises(ModelError, match="expected a JSON list"):
        read_labels(labels)
    labels.write_text('["cat", "dog"]')
    assert read_labels(labels) == ["cat", "dog"]


def test_a_zipmap_output_comes_back_as_a_tensor(tmp_path: Path) -> None:
    info = inspect_onnx(IRIS)
    assert [(s.name, s.dtype, s.shape) for s in info.inputs] == [
        ("float_input", "float32", (-1, 4))
    ]
    assert [(s.name, s.dtype) for s in info.outputs] == [
        ("label", "int64"),
        ("probabilities", "float32"),
    ]
    registry = load_registry(Config(data_dir=tmp_path / "data", shipped_models=True))
    spec = registry.find("iris")
    assert spec is not None and spec.source == "plugin" and spec.processing == "iris"
    out = LoadedModel(spec).run({"float_input": np.array([[5.1, 3.5, 1.4, 0.2]] * 2, np.float32)})
    assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (2, 3)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), [1.0, 1.0], rtol=1e-5)
    assert zipmap_to_tensor([{1: 0.25, 0: 0.75}]).tolist() == [[0.75, 0.25]]


def test_shipped_models_can_be_left_out(tmp_path: Path) -> None:
    shipped = load_registry(Config(data_dir=tmp_path))
    assert {"digits", "iris"} <= set(shipped.names())
    assert {s.source for s in shipped.specs() if s.name in ("digits", "iris")} == {
        "shipped",
        "plugin",
    }
    assert load_registry(Config(data_dir=tmp_path, shipped_models=False)).specs() == []


# --- the command line ------------------------------------------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_models_commands_round_trip(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(i) for i in range(10)))
    code, out, err = run(
        "models",
        "add",
        str(DIGITS),
        "--name",
        "mine",
        "--labels",
        str(labels),
        "--version",
        "3",
        "--data-dir",
        data,
    )
    assert code == 0, err
    assert out.startswith("added mine 3 (sha256 e691fb4ca41d)")
    code, out, _ = run("models", "list", "--data-dir", data)
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert {"digits", "iris", "mine"} <= set(rows) and "user" in rows["mine"]
    code, out, _ = run("models", "list", "--json", "--data-dir", data)
    listed = {m["name"]: m for m in json.loads(out)}
    assert listed["mine"]["version"] == "3" and listed["mine"]["labels"][9] == "9"
    code, out, _ = run("models", "show", "mine", "--data-dir", data)
    assert code == 0 and "input        input float32 [N, 64]" in out and "(labels)" in out
    code, out, _ = run("models", "remove", "mine", "--data-dir", data)
    assert code == 0 and out.startswith("removed mine 3")
    code, _, err = run("models", "show", "mine", "--data-dir", data)
    assert code == 1 and err.startswith("p2pai: error: no model 'mine'")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("models", "add", "{bad}"), "not a model onnxruntime can load"),
        (("models", "add", "{missing}"), "no such file"),
        (("models", "add", "{digits}", "--name", "a/b"), "model name 'a/b'"),
        (("models", "add", "{wine}", "--name", "digits"), "taken by the shipped model digits"),
        (("models", "add", "{wine}", "--name", "iris"), "taken by the plugin model iris"),
        (("models", "remove", "digits"), "digits is a shipped model"),
        (("models", "remove", "nothing"), "no model 'nothing'"),
        (("models", "show", "nothing"), "no model 'nothing'"),
    ],
)
def test_models_command_errors_are_one_line(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_text("hello")
    wine = tmp_path / "wine.onnx"
    wine.write_bytes(DIGITS.read_bytes())
    values = {
        "bad": str(bad),
        "missing": str(tmp_path / "missing.onnx"),
        "digits": str(DIGITS),
        "wine": str(wine),
    }
    code, _, err = run(*(a.format(**values) for a in args), "--data-dir", str(tmp_path / "d"))
    assert code == 1
    assert err.startswith("p2pai: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_remove_asks_which_version(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for factor in (2.0, 3.0):
        path = tmp_path / f"s{factor}.onnx"
        path.write_bytes(scale_model(factor))
        add_model(data / "models", path, name="scale")
    code, _, err = run("models", "remove", "scale", "--data-dir", str(data))
    assert code == 1 and "has 2 versions here" in err
    code, out, _ = run("models", "remove", "scale", "--all", "--data-dir", str(data))
    assert code == 0 and out.count("removed scale") == 2
    assert stored_models(data / "models") == []


def test_a_stale_manifest_is_skipped_not_fatal(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    spec = add_model(folder, DIGITS, name="mine")
    shutil.copy(DIGITS, folder / "other.onnx")
    (folder / "broken.json").write_text("{not json")
    spec.path.write_bytes(b"changed")  # sha256 no longer matches: refused at load
    registry = ModelRegistry([folder])
    held = registry.find("mine")
    assert held is not None
    with pytest.raises(ModelError, match="file changed or corrupt"):
        registry.load(held)


def test_the_label_output_is_found_by_name() -> None:
    from netcore.models.registry import TensorSpec
    from netcore.models.store import OnnxInfo, build_manifest

    def manifest(*outputs: tuple[str, str]) -> dict[str, object]:
        info = OnnxInfo(
            [TensorSpec("X", "float32", (-1, 4))], [TensorSpec(*o) for o in outputs], []
        )
        return build_manifest("m", "a" * 64, 1, "m.onnx", info)

    # skl2onnx names them output_label / output_probability.
    assert (
        manifest(("output_label", "int64"), ("output_probability", "float32"))["label_output"]
        == "output_label"
    )
    assert manifest(("label", "int64"))["label_output"] == "label"
    assert "label_output" not in manifest(("y", "float32"))
    assert "label_output" not in manifest(("label", "float32"))


def test_replace_takes_a_shipped_name_and_says_which_model_is_used(tmp_path: Path) -> None:
    data = tmp_path / "d"
    code, out, _ = run(
        "models", "add", str(IRIS), "--name", "digits", "--replace", "--data-dir", str(data)
    )
    assert code == 0, out
    assert "digits now means this model; the shipped one" in out
    from netcore.models.plugins import load_registry

    used = load_registry(Config(data_dir=data, name="t")).find("digits")
    assert used is not None and used.source == "user" and used.inputs[0].shape == (-1, 4)
