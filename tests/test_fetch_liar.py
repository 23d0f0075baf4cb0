"""A hostile worker that answers ``unknown_model`` to every task (``tests/liar.py``, mode
``no_model``) next to real in-process nodes on 127.0.0.1: the requester's tasks complete on
the honest worker, the liar costs at most one attempt per model (then others are preferred),
and alone it cannot make a task loop: bounded attempts, then one ``unknown_model`` outcome."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from liar import LyingNode
from model_helpers import loopback_config, running, unique_network
from onnx_bytes import scale_model

from netcore.models.store import add_model

pytestmark = pytest.mark.timeout(90)

X = {"x": np.arange(4, dtype=np.float32)}


def requester_with_model(tmp_path: Path, network: str) -> object:
    cfg = loopback_config(tmp_path, "requester", network)
    path = tmp_path / "triple.onnx"
    path.write_bytes(scale_model(3.0))
    add_model(cfg.data_dir / "models", path, name="triple")
    return cfg


async def test_tasks_complete_on_the_honest_worker_and_the_liar_costs_one_attempt(
    tmp_path: Path,
) -> None:
    network = unique_network("liar")
    req_cfg = requester_with_model(tmp_path, network)
    liar = LyingNode(loopback_config(tmp_path, "liar", network, shipped_models=False), "no_model")
    honest_cfg = loopback_config(tmp_path, "honest", network, shipped_models=False)
    async with running(req_cfg, liar, honest_cfg) as (requester, _, honest):  # type: ignore[arg-type]
        outcomes = [await requester.submit("triple", X) for _ in range(10)]
        assert all(o.ok and o.worker == honest.peer_id for o in outcomes), outcomes
        assert liar.asked <= 1
        # Saying "I lack it" is no misbehaviour and the honest worker did none: nobody is
        # quarantined, and no failure is on anyone's record.
        reputation = requester.trust.reputation
        for node in (liar, honest):
            assert requester.trust.quarantined(node.peer_id) == ""
            record = reputation.get(node.identity.public_text)  # type: ignore[union-attr]
            assert record is None or record.pending.get("failures") == 0
        assert reputation.get(honest.identity.public_text).pending.get("tasks_ok") == 10  # type: ignore[union-attr]


async def test_alone_the_liar_costs_bounded_attempts(tmp_path: Path) -> None:
    network = unique_network("liar")
    req_cfg = requester_with_model(tmp_path, network)
    liar = LyingNode(loopback_config(tmp_path, "liar", network, shipped_models=False), "no_model")
    async with running(req_cfg, liar) as (requester, _):  # type: ignore[arg-type]
        outcome = await requester.submit("triple", X, timeout=0.5, max_attempts=3)
        assert not outcome.ok and outcome.error_code == "unknown_model"
        assert outcome.attempts == 3 and liar.asked == 3
        assert "no, never" in outcome.error
