"""Folded packaged graphs travel like any model: a worker without them (no shipped models, no
packages' weights registered) fetches ``minilm`` and the OCR stages from the requester with
``model_get`` and serves the kinds' tasks. Real in-process nodes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from kind_helpers import char_accuracy, render_page
from model_helpers import loopback_config, running, unique_network, wait_until

from netcore.models.kinds import InputError, Item, kind_for
from netcore.node import Node

pytest.importorskip("cv2", reason="the ocr extra")
pytest.importorskip("tokenizers", reason="the embed extra")
pytestmark = pytest.mark.timeout(240)


def swarm_infer(node: Node):  # type: ignore[no-untyped-def]
    async def infer(model: str, inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        outcome = await node.submit(model, dict(inputs))
        if not outcome.ok:
            raise InputError(f"{model}: {outcome.error_code}: {outcome.error}")
        return outcome.outputs

    return infer


async def test_a_worker_fetches_the_folded_graphs_and_serves_the_kinds(tmp_path: Path) -> None:
    network = unique_network("kinds")
    client = loopback_config(tmp_path, "client", network, caps=(), task_timeout=120.0)
    worker_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    async with running(client, worker_cfg) as (requester, worker):
        assert worker.registry.specs() == []
        await wait_until(lambda: bool(requester.usable_peers()), what="a worker")
        infer = swarm_infer(requester)

        minilm = requester.registry.find("minilm")
        assert minilm is not None
        kind = kind_for(minilm)
        (chunk,) = kind.parts(kind.read(Item("t", value="Peers share models they hold.")))
        record = await kind.run(chunk, infer)
        local = await kind.run(chunk, _local(requester))
        assert len(record["embedding"]) == 384
        assert kind.same_result(record, local)
        assert worker.registry.find("minilm", minilm.sha256) is not None

        ocr = requester.registry.find("ocr")
        assert ocr is not None
        page = tmp_path / "page.png"
        lines = ["Shared over model_get", "then read on the worker"]
        page.write_bytes(render_page(lines))
        kind = kind_for(ocr)
        result = await kind.run(kind.read(Item(page.name, page)), infer)
        assert char_accuracy(result["text"], "\n".join(lines)) >= 0.95, result["text"]
        for name in ("ocr", "ocr-rec"):
            spec = requester.registry.find(name)
            assert spec is not None
            assert worker.registry.find(name, spec.sha256) is not None
        assert worker.fetcher.fetched == 3 and worker.fetcher.refused == 0


def _local(node: Node):  # type: ignore[no-untyped-def]
    async def infer(model: str, inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        spec = node.registry.find(model)
        assert spec is not None
        return node.registry.load(spec).run(inputs)

    return infer
