"""The model commands against real ``p2pai node`` processes on 127.0.0.1: batched submit,
``infer`` through plugins, a user model fetched by a worker, ``--provider``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
Run = Callable[..., subprocess.CompletedProcess[str]]


def client_args(network: str, data_dir: Path) -> list[str]:
    return ["--interface", "127.0.0.1", "--network", network, "--data-dir", str(data_dir)]


def test_submit_batches_and_infer_with_plugins(
    start_node: Callable[..., Any], run_cli: Run, network: str, tmp_path: Path
) -> None:
    start_node("w1", "--provider", "cpu")
    start_node("w2")
    client = tmp_path / "client"
    res = run_cli("submit", "--json", "--batch", "64", "--wait-peers", "2",
                  *client_args(network, client), timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["samples"] == summary["samples_ok"] == 360
    assert summary["tasks"] == 6 and summary["batch"] == 64
    assert summary["accuracy"] == 0.9722
    res = run_cli("submit", "--batch", "100", "--count", "250", *client_args(network, client))
    assert res.returncode == 0, res.stderr
    assert "samples: 250/250 ok in tasks of 100" in res.stdout

    res = run_cli("infer", "iris", "[6.9, 3.1, 5.4, 2.1]", *client_args(network, client))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["species"] == "virginica"
    res = run_cli("infer", "double", "4 5", *client_args(network, client))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == "8 10"
    res = run_cli("infer", "iris", "[1, 2]", *client_args(network, client))
    assert res.returncode == 1
    assert res.stderr.startswith("p2pai: error: plugin iris: cannot read this input")
    assert res.stderr.count("\n") == 1


def test_a_user_model_is_fetched_by_a_worker(
    start_node: Callable[..., Any], run_cli: Run, network: str, tmp_path: Path
) -> None:
    """`models add` on the client's data dir; `submit` sends it to a worker that lacks it."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from onnx_bytes import scale_model

    model = tmp_path / "triple.onnx"
    model.write_bytes(scale_model(3.0))
    client = tmp_path / "client"
    res = run_cli("models", "add", str(model), "--data-dir", str(client))
    assert res.returncode == 0, res.stderr
    worker = start_node("w1")
    res = run_cli("infer", "triple", "[1, 2, 3]", *client_args(network, client))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"y": [3.0, 6.0, 9.0]}
    stored = list((worker.data_dir / "models").glob("triple-*.onnx"))
    assert len(stored) == 1


def test_an_unknown_provider_is_one_line(run_cli: Run, network: str, tmp_path: Path) -> None:
    res = run_cli("node", "--provider", "tpu", *client_args(network, tmp_path / "n"), timeout=30)
    assert res.returncode == 1
    assert res.stderr.strip().endswith(
        "--provider 'tpu': unknown; choose one of cuda, rocm, coreml, directml, cpu"
    )
    assert "Traceback" not in res.stderr
