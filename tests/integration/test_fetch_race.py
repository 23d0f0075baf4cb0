"""A model the workers lack, fetched from the requester (issue 15, item 2), with real
``p2pai node`` and ``p2pai submit`` processes on 127.0.0.1.

* A requester the worker has no way to dial (a client-only node, found by nobody's mDNS: it
  comes in with ``--no-mdns --peer``) still gets its model fetched: the worker sends
  ``model_get`` back on the connection the task came on. This is the README's add-a-model
  walk-through at its worst moment: ``submit`` right after joining, before the worker has
  any endpoint of the requester (the race failed 2 of 5 walk-throughs).
* A worker that cannot fetch the model (a real limit: ``max_model_bytes`` below its size)
  answers ``unknown_model``; the task waits for another worker and completes there.
"""

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
sys.path.insert(0, str(REPO / "tests"))
from onnx_bytes import classifier_model  # noqa: E402

Run = Callable[..., subprocess.CompletedProcess[str]]


def user_model(run_cli: Run, tmp_path: Path) -> tuple[Path, Path]:
    """`models add` a wine-shaped classifier (13 features, 3 classes) to the user's data dir,
    and 20 samples for it; returns (the user's data dir, the samples file)."""
    model = tmp_path / "wine.onnx"
    model.write_bytes(classifier_model(13, 3))
    labels = tmp_path / "wine-labels.txt"
    labels.write_text("class_0\nclass_1\nclass_2\n")
    samples = tmp_path / "wine-samples.npy"
    np.save(samples, np.random.default_rng(0).random((20, 13)).astype(np.float32))
    me = tmp_path / "me"
    res = run_cli("models", "add", str(model), "--labels", str(labels), "--data-dir", str(me))
    assert res.returncode == 0, res.stderr
    return me, samples


def stored(worker: Any) -> list[str]:
    return sorted(p.name for p in (worker.data_dir / "models").glob("wine-*.onnx"))


def test_a_requester_the_worker_cannot_dial_gets_its_model_fetched(
    start_node: Callable[..., Any], run_cli: Run, network: str, tmp_path: Path
) -> None:
    me, samples = user_model(run_cli, tmp_path)
    worker = start_node("w1")
    res = run_cli(
        "submit", "--model", "wine", "--input", str(samples), "--batch", "10",
        "--no-mdns", "--peer", f"{worker.endpoint}#{worker.key}",
        "--interface", "127.0.0.1", "--network", network, "--data-dir", str(me),
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAILED" not in res.stdout and "samples: 20/20 ok" in res.stdout, res.stdout
    assert len(stored(worker)) == 1
    served = worker.snapshot("task_served")
    assert served and all(e["ok"] for e in served), served


def test_a_worker_that_cannot_fetch_hands_the_task_to_another(
    start_node: Callable[..., Any],
    popen_cli: Callable[..., subprocess.Popen[str]],
    run_cli: Run,
    network: str,
    tmp_path: Path,
) -> None:
    me, samples = user_model(run_cli, tmp_path)
    small = tmp_path / "small.toml"
    small.write_text("max_model_bytes = 64\n")  # the model is bigger: this worker cannot fetch it
    cramped = start_node("cramped", "--config", str(small))
    submit = popen_cli(
        "submit", "--model", "wine", "--input", str(samples), "--batch", "10", "--json",
        "--task-timeout", "60",
        "--interface", "127.0.0.1", "--network", network, "--data-dir", str(me),
    )  # fmt: skip
    # The only worker there refuses the task; only then does another one start.
    refusal = cramped.wait_for("task_served", lambda e: not e["ok"], timeout=60)
    assert refusal["error"] == "unknown_model"
    roomy = start_node("roomy")
    out, err = submit.communicate(timeout=120)
    assert submit.returncode == 0, out + err
    summary = json.loads(out)
    assert summary["samples_ok"] == summary["samples"] == 20, summary
    assert stored(cramped) == [] and len(stored(roomy)) == 1
    assert cramped.count("task_served", lambda e: e["ok"]) == 0
    assert roomy.count("task_served", lambda e: e["ok"]) == 2
