"""Inputs checked on the requester, against real ``p2pai node`` workers on 127.0.0.1 (issue 15,
items 4 and 7): a [N, 8, 8] file runs (flattened, and said), a model held only by a peer is
checked against the signature it advertises, an unknown model is one line at once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
Run = Callable[..., subprocess.CompletedProcess[str]]


def client_args(network: str, data_dir: Path) -> list[str]:
    return ["--interface", "127.0.0.1", "--network", network, "--data-dir", str(data_dir)]


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("p2pai: error: ")
    return lines[0].removeprefix("p2pai: error: ")


def test_an_unknown_model_is_one_line_once_a_worker_answered(
    start_node: Callable[..., Any], run_cli: Run, network: str, tmp_path: Path
) -> None:
    """Before: `submit --model nosuchmodel` waited out --timeout (here 600 s, longer than the
    run is given) and then diagnosed the network."""
    start_node("w1")
    client = tmp_path / "client"
    for command in (["submit", "--model", "nosuchmodel"], ["infer", "nosuchmodel", "[1]"]):
        res = run_cli(*command, "--timeout", "600", *client_args(network, client), timeout=60)
        line = one_error_line(res)
        assert line.startswith("unknown model 'nosuchmodel': this node holds digits, ")
        assert "; peers hold " in line and "digits (w1)" in line


def test_a_3d_file_runs_flattened_and_a_mismatch_is_one_line_before_sending(
    start_node: Callable[..., Any], run_cli: Run, network: str, tmp_path: Path
) -> None:
    """Before: [360, 8, 8] became [2880, 8] and every task failed on the worker."""
    worker = start_node("w1")
    x = np.load(REPO / "assets" / "samples" / "digits-test.npz")["x"]
    np.save(tmp_path / "digits-8x8.npy", x.reshape(-1, 8, 8).astype(np.float64))
    client = tmp_path / "client"
    res = run_cli("submit", "--input", "digits-8x8.npy", "--count", "3", "--json",
                  *client_args(network, client))  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["tasks"] == summary["ok"] == 3
    assert res.stderr.splitlines() == [
        "p2pai: note: input 'input' of model digits: samples of shape [8, 8] read as [64] "
        "(flattened row by row)"
    ]
    np.save(tmp_path / "wine.npy", np.zeros((20, 13)))
    served = worker.count("task_served")
    res = run_cli("submit", "--input", "wine.npy", *client_args(network, client))
    assert one_error_line(res) == (
        "--input wine.npy: input 'input' of model digits: expected float32 [N, 64], "
        "given float64 [20, 13]"
    )
    assert worker.count("task_served") == served


def test_a_model_held_by_a_peer_is_checked_against_its_advertised_signature(
    start_node: Callable[..., Any], run_cli: Run, network: str, tmp_path: Path
) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from onnx_bytes import scale_model

    model = tmp_path / "triple.onnx"
    model.write_bytes(scale_model(3.0))
    worker_dir = tmp_path / "nodes" / "w1"
    res = run_cli("models", "add", str(model), "--data-dir", str(worker_dir))
    assert res.returncode == 0, res.stderr
    start_node("w1", data_dir=worker_dir)
    client = tmp_path / "client"  # holds no triple: only the worker's hello tells its inputs
    res = run_cli("infer", "triple", "[1, 2, 3]", *client_args(network, client))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"y": [3.0, 6.0, 9.0]}
    np.save(tmp_path / "rows.npy", np.ones((4, 3)))
    res = run_cli("submit", "--model", "triple", "--input", "rows.npy",
                  *client_args(network, client))  # fmt: skip
    assert one_error_line(res) == (
        "--input rows.npy: input 'x' of model triple: expected float32 [N], given float64 [4, 3]"
    )
    res = run_cli("infer", "triple", "[[1, 2], [3, 4]]", *client_args(network, client))
    assert one_error_line(res) == (
        "input 'x' of model triple: expected float32 [N], given int64 [2, 2]"
    )
