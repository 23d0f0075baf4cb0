"""Execution providers: the best available is chosen, --provider forces one, and a provider
that fails to load falls back to CPU with a warning (the model still runs)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from model_helpers import loopback_config, unique_network

from netcore.models import providers
from netcore.models.registry import LoadedModel, ModelRegistry, load_manifest
from netcore.node import Node, NodeStartError

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "assets" / "models" / "digits.json"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def offer(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(names))


class FailingSession:
    """An InferenceSession stand-in whose accelerated provider fails to load."""

    real = ort.InferenceSession

    def __new__(cls, source: Any, sess_options: Any = None, providers: Any = None) -> Any:
        if providers and providers[0] != CPU:
            raise RuntimeError(f"{providers[0]} failed: libcudart.so.12: cannot open shared object")
        return cls.real(source, sess_options=sess_options, providers=providers)


def test_the_best_available_provider_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    offer(monkeypatch, ["AzureExecutionProvider", CPU])
    assert providers.select() == [CPU]
    offer(monkeypatch, [CPU, "CoreMLExecutionProvider", CUDA])
    assert providers.select() == [CUDA, CPU]
    offer(monkeypatch, ["DmlExecutionProvider", CPU])
    assert providers.select() == ["DmlExecutionProvider", CPU]
    assert providers.accel_names([CUDA, CPU]) == ["cuda", "cpu"]
    assert providers.accel_names(["TensorrtExecutionProvider"]) == ["tensorrt"]


def test_provider_can_be_forced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    offer(monkeypatch, [CUDA, CPU])
    assert providers.select("cpu") == [CPU]
    assert providers.select("CUDA") == [CUDA, CPU]
    with pytest.raises(providers.ProviderError, match="unknown; choose one of cuda, rocm"):
        providers.select("tpu")
    offer(monkeypatch, [CPU])
    with caplog.at_level(logging.WARNING, "p2pai.providers"):
        assert providers.select("rocm") == [CPU]
    assert "provider rocm is not available" in caplog.text


def test_a_provider_that_fails_to_load_falls_back_to_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ort, "InferenceSession", FailingSession)
    with caplog.at_level(logging.WARNING, "p2pai.providers"):
        model = LoadedModel(load_manifest(DIGITS), [CUDA, CPU])
    assert model.providers == [CPU]
    assert "provider cuda failed to load" in caplog.text and "falling back to cpu" in caplog.text
    out = model.run({"input": np.zeros((3, 64), dtype=np.float32)})
    assert out["label"].shape == (3,)


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_a_provider_onnxruntime_skips_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime itself may drop an unusable provider and run on CPU: that is reported too."""
    with caplog.at_level(logging.WARNING, "p2pai.providers"):
        session, used = providers.create_session(
            str(REPO / "assets" / "models" / "digits.onnx"), None, [CUDA, CPU], "digits"
        )
    assert used == [CPU] and session is not None
    assert "provider cuda did not load" in caplog.text


def test_the_registry_advertises_only_what_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "InferenceSession", FailingSession)
    registry = ModelRegistry([DIGITS.parent])
    registry.use_providers([CUDA, CPU])
    assert registry.accel == ["cuda", "cpu"]
    spec = registry.find("digits")
    assert spec is not None
    registry.load(spec)
    assert registry.accel == ["cpu"]


async def test_node_advertises_its_accelerator_and_refuses_an_unknown_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offer(monkeypatch, [CUDA, CPU])
    node = Node(loopback_config(tmp_path, "n", unique_network(), mdns=False))
    await node.start()
    try:
        assert node.registry.providers == [CUDA, CPU]
        assert node.membership.hello(b"x" * 16)["accel"] == ["cuda", "cpu"]
    finally:
        await node.stop()
    bad = Node(loopback_config(tmp_path, "m", unique_network(), mdns=False, provider="tpu"))
    with pytest.raises(NodeStartError, match="--provider 'tpu': unknown"):
        await bad.start()
