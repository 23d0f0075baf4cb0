"""Fetched models: a total disk quota (least recently used fetched models make room, models the
user added never go, a model over the quota is refused and run elsewhere), and one onnxruntime
load per model. Real nodes on 127.0.0.1 (each test its own network), real ONNX files padded to
the sizes wanted (tests/onnx_bytes.py), real onnxruntime sessions counted at their constructor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
from model_helpers import loopback_config, running, unique_network
from onnx_bytes import scale_model

from netcore.config.settings import Config
from netcore.models.quota import USAGE_FILE
from netcore.models.store import add_model
from netcore.node import Node

KB = 1000
PAD = 300 * KB
"""Each test model is about 300 kB."""
QUOTA = 700 * KB
"""Two of them fit, three do not."""


def user_model(tmp_path: Path, data_dir: Path, name: str, seed: int, pad: int = PAD) -> str:
    """A real model of about ``pad`` bytes added (``models add``) to ``data_dir``; its sha256."""
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(scale_model(float(seed + 2), pad, seed=seed))
    return add_model(data_dir / "models", path, name=name).sha256


def stored(node: Node | Config) -> set[str]:
    """The model names in a node's store (one manifest each)."""
    config = node.config if isinstance(node, Node) else node
    folder = config.data_dir / "models"
    return (
        {json.loads(p.read_text())["name"] for p in folder.glob("*.json")}
        if folder.is_dir()
        else set()
    )


async def run(requester: Node, name: str, **options: Any) -> Any:
    return await requester.submit(name, {"x": np.ones(3, dtype=np.float32)}, **options)


async def test_least_recently_used_fetched_models_make_room_user_models_stay(
    tmp_path: Path,
) -> None:
    network = unique_network("quota")
    req_cfg = loopback_config(tmp_path, "requester", network, shipped_models=False)
    for seed, name in enumerate(("alpha", "beta", "gamma", "delta")):
        user_model(tmp_path, req_cfg.data_dir, name, seed)
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False, model_quota=QUOTA)
    # The worker's own model (added by its user) is bigger than what is left: it never goes.
    user_model(tmp_path, wrk_cfg.data_dir, "mine", 9, pad=500 * KB)
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        for name in ("alpha", "beta", "alpha"):  # alpha is now used more recently than beta
            outcome = await run(requester, name)
            assert outcome.ok and outcome.worker == worker.peer_id, outcome.error
        assert stored(worker) == {"mine", "alpha", "beta"}
        outcome = await run(requester, "gamma")  # does not fit beside both: beta goes
        assert outcome.ok, outcome.error
        assert stored(worker) == {"mine", "alpha", "gamma"}
        assert worker.registry.find("beta") is None and worker.fetcher.quota.evicted == 1
        assert worker.fetcher.quota.used() <= QUOTA
        outcome = await run(requester, "beta")  # fetched again: alpha is the oldest use now
        assert outcome.ok, outcome.error
        assert stored(worker) == {"mine", "gamma", "beta"}
        assert worker.fetcher.quota.used() <= QUOTA
        outcome = await run(requester, "gamma")  # gamma newest, beta older
        assert outcome.ok and outcome.worker == worker.peer_id, outcome.error
    # The last uses survive a restart (file atimes are not trusted: an index is kept).
    index = json.loads((wrk_cfg.data_dir / "models" / USAGE_FILE).read_text())
    assert len(index["last_used"]) == 2
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        outcome = await run(requester, "delta")
        assert outcome.ok, outcome.error
        assert stored(worker) == {"mine", "gamma", "delta"}, "beta was the least recently used"


async def test_a_model_larger_than_the_quota_is_refused_and_runs_elsewhere(
    tmp_path: Path,
) -> None:
    network = unique_network("quota")
    req_cfg = loopback_config(tmp_path, "requester", network, shipped_models=False)
    user_model(tmp_path, req_cfg.data_dir, "huge", 1, pad=900 * KB)
    small_cfg = loopback_config(tmp_path, "small", network, shipped_models=False, model_quota=QUOTA)
    async with running(req_cfg, small_cfg) as (requester, small):
        outcome = await run(requester, "huge", max_attempts=1)
        assert not outcome.ok and outcome.error_code == "unknown_model"
        assert "quota for fetched models" in outcome.error and "--model-quota" in outcome.error
        assert stored(small) == set()
        assert not any((small_cfg.data_dir / "models").glob(".*.part"))
    big_cfg = loopback_config(tmp_path, "big", network, shipped_models=False)
    async with running(req_cfg, small_cfg, big_cfg) as (requester, small, big):
        for _ in range(3):
            outcome = await run(requester, "huge")
            assert outcome.ok and outcome.worker == big.peer_id, outcome.error
        assert stored(small) == set() and stored(big) == {"huge"}


class Counting:
    """Wraps onnxruntime.InferenceSession: every real session created, by the file it read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        real = onnxruntime.InferenceSession
        paths = self.paths

        class CountingSession(real):  # type: ignore[misc, valid-type]
            def __init__(self, source: Any, *args: Any, **kwargs: Any) -> None:
                paths.append(str(source) if isinstance(source, (str, Path)) else "<bytes>")
                super().__init__(source, *args, **kwargs)

        monkeypatch.setattr(onnxruntime, "InferenceSession", CountingSession)

    def under(self, directory: Path) -> int:
        return sum(1 for p in self.paths if p.startswith(str(directory)))


async def test_a_fetched_model_is_loaded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = Counting(monkeypatch)
    network = unique_network("quota")
    req_cfg = loopback_config(tmp_path, "requester", network, shipped_models=False)
    user_model(tmp_path, req_cfg.data_dir, "alpha", 1)
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        for _ in range(5):
            outcome = await run(requester, "alpha")
            assert outcome.ok and outcome.worker == worker.peer_id, outcome.error
        loads = counting.under(wrk_cfg.data_dir)
        print(f"\nonnxruntime sessions on the worker for one fetched model: {loads}")
        assert loads == 1, counting.paths
        assert worker.registry.sessions_created == 1


async def test_a_held_model_is_loaded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """warm-up and the tasks share one session (the registry's cache)."""
    counting = Counting(monkeypatch)
    network = unique_network("quota")
    req_cfg = loopback_config(tmp_path, "requester", network, shipped_models=False)
    user_model(tmp_path, req_cfg.data_dir, "alpha", 1)
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    user_model(tmp_path, wrk_cfg.data_dir, "alpha", 1)
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        for _ in range(5):
            outcome = await run(requester, "alpha")
            assert outcome.ok and outcome.worker == worker.peer_id, outcome.error
        assert counting.under(wrk_cfg.data_dir) == 1, counting.paths
