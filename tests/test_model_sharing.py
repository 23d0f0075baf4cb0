"""Peer-to-peer model sharing between real in-process nodes on 127.0.0.1.

A worker whose registry is empty (``shipped_models=False``, empty data dir) gets a task for
a model pinned by sha256, fetches it from the requester with ``model_get``, verifies it,
stores it and answers. Tampered transfers are refused and retried.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_helpers import loopback_config, running, unique_network, wait_until
from onnx_bytes import scale_model

from netcore.models.fetch import ModelFetcher
from netcore.models.registry import (
    LoadedModel,
    ModelRegistry,
    load_manifest,
    load_samples,
    sha256_file,
)
from netcore.models.store import add_model
from netcore.net.peers import PeerTable
from netcore.node import Node
from netcore.wire import protocol
from netcore.wire.protocol import TaskError

pytestmark = pytest.mark.timeout(90)

DIGITS_SHA = "e691fb4ca41d5f8f54adccd72904cf778f94a59d42969f3c6a027f3e7646a89c"


def big_model(tmp_path: Path, data_dir: Path, name: str = "scale", pad: int = 3_500_000) -> str:
    """A multi-chunk model (about 3.5 MB: four chunks) in ``data_dir/models``; its sha256."""
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(scale_model(2.0, pad))
    return add_model(data_dir / "models", path, name=name).sha256


def stored_files(node: Node) -> list[str]:
    folder = node.config.data_dir / "models"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def tamper_chunks(
    node: Node, monkeypatch: pytest.MonkeyPatch, change: Any, times: int
) -> list[int]:
    """Make ``node`` serve altered ``model_chunk`` data ``times`` times; returns the offsets.
    (``serve_model`` answers every ``model_get``, on the ROUTER and back on a DEALER.)"""
    real_serve = node.session.serve_model
    tampered: list[int] = []

    def serve(msg: dict[str, Any]) -> dict[str, Any]:
        reply = real_serve(msg)
        if reply.get("t") == "model_chunk" and len(tampered) < times:
            tampered.append(reply["offset"])
            reply = {**reply, "data": change(reply["data"])}
        return reply

    monkeypatch.setattr(node.session, "serve_model", serve)
    return tampered


def flip_byte(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:]


# --- fetching --------------------------------------------------------------------------------


async def test_worker_without_the_model_fetches_it_from_the_requester(tmp_path: Path) -> None:
    network = unique_network()
    req_cfg = loopback_config(tmp_path, "requester", network)
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        assert worker.registry.specs() == []
        assert not any(p.has_model("digits") for p in requester.peers)
        x, _ = load_samples()
        outcome = await requester.submit("digits", x[:50])
        assert outcome.ok, outcome.error
        assert outcome.worker == worker.peer_id
        # The same predictions as the model run here.
        local = LoadedModel(load_manifest(Path("assets/models/digits.json").resolve()))
        np.testing.assert_array_equal(
            outcome.outputs["label"], local.run({"input": x[:50]})["label"]
        )
        # Verified and stored under its content's name, manifest beside it, no temp file left.
        assert worker.fetcher.fetched == 1 and worker.fetcher.refused == 0
        assert stored_files(worker) == ["digits-e691fb4ca41d.json", "digits-e691fb4ca41d.onnx"]
        onnx_path = worker.config.data_dir / "models" / "digits-e691fb4ca41d.onnx"
        assert sha256_file(onnx_path) == DIGITS_SHA
        manifest = json.loads(onnx_path.with_suffix(".json").read_text())
        assert manifest["source"] == "fetched" and manifest["fetched_from"] == requester.peer_id
        assert manifest["label_output"] == "label" and manifest["version"] == "1.0.0"
        assert manifest["inputs"] == [{"name": "input", "dtype": "float32", "shape": [-1, 64]}]
        # The worker greets again: the requester now counts it as a holder.
        await wait_until(
            lambda: (
                requester.peers.get(worker.peer_id) is not None
                and requester.peers.get(worker.peer_id).has_model("digits", DIGITS_SHA)
            ),  # type: ignore[union-attr]
            what="the worker to advertise its new model",
        )
        again = await requester.submit("digits", x[50:60])
        assert again.ok and worker.fetcher.fetched == 1  # held now: no second download
    # It survives a restart: the data dir's registry holds it.
    assert ModelRegistry([wrk_cfg.data_dir / "models"]).find("digits", DIGITS_SHA) is not None


async def test_a_client_only_requester_shares_its_model(tmp_path: Path) -> None:
    """`p2pai submit` is a client-only node: it advertises its models so workers can fetch."""
    network = unique_network()
    client = loopback_config(tmp_path, "client", network, caps=())
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    async with running(client, wrk_cfg) as (requester, worker):
        await wait_until(lambda: bool(requester.usable_peers()), what="a worker")
        outcome = await requester.submit("digits", load_samples()[0][:4])
        assert outcome.ok, outcome.error
        assert worker.registry.find("digits", DIGITS_SHA) is not None


async def test_concurrent_tasks_share_one_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = unique_network()
    req_cfg = loopback_config(tmp_path, "requester", network)
    sha = big_model(tmp_path, req_cfg.data_dir)
    size = (req_cfg.data_dir / "models" / f"scale-{sha[:12]}.onnx").stat().st_size
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        served: list[int] = []
        real = requester.session.serve_model

        def count(msg: dict[str, Any]) -> dict[str, Any]:
            served.append(msg["offset"])
            return real(msg)

        monkeypatch.setattr(requester.session, "serve_model", count)
        x = np.arange(6, dtype=np.float32)
        outcomes = await asyncio.gather(
            *(requester.submit("scale", {"x": x + k}) for k in range(8))
        )
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        for k, o in enumerate(outcomes):
            np.testing.assert_allclose(o.outputs["y"], (x + k) * 2.0)
        assert worker.fetcher.fetched == 1
        chunks = -(-size // protocol.MAX_CHUNK)
        assert sorted(served) == [i * protocol.MAX_CHUNK for i in range(chunks)]
        assert chunks == 4


@pytest.mark.parametrize(
    "change", [flip_byte, lambda data: data[:-10]], ids=["corrupt", "truncated"]
)
async def test_a_bad_chunk_is_refused_and_the_transfer_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    network = unique_network()
    req_cfg = loopback_config(tmp_path, "requester", network)
    sha = big_model(tmp_path, req_cfg.data_dir)
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        tampered = tamper_chunks(requester, monkeypatch, change, times=1)
        outcome = await requester.submit("scale", {"x": np.ones(3, dtype=np.float32)})
        assert outcome.ok, outcome.error
        assert tampered == [0]
        assert worker.fetcher.refused == 1 and worker.fetcher.fetched == 1
        stored = worker.config.data_dir / "models" / f"scale-{sha[:12]}.onnx"
        assert sha256_file(stored) == sha
        assert not [n for n in stored_files(worker) if n.endswith(".part")]


async def test_a_corrupt_chunk_in_the_middle_fails_the_whole_file_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flipped byte in a later chunk passes the per-chunk checks; the file's sha256 catches it."""
    network = unique_network()
    req_cfg = loopback_config(tmp_path, "requester", network)
    big_model(tmp_path, req_cfg.data_dir)
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        real_serve = requester.session.serve_model
        hits: list[int] = []

        def serve(msg: dict[str, Any]) -> dict[str, Any]:
            reply = real_serve(msg)
            if (
                reply.get("t") == "model_chunk"
                and reply["offset"] == 2 * protocol.MAX_CHUNK
                and not hits
            ):
                hits.append(reply["offset"])
                reply = {**reply, "data": flip_byte(reply["data"])}
            return reply

        monkeypatch.setattr(requester.session, "serve_model", serve)
        outcome = await requester.submit("scale", {"x": np.ones(3, dtype=np.float32)})
        assert outcome.ok, outcome.error
        assert hits and worker.fetcher.refused == 1 and worker.fetcher.fetched == 1


async def test_a_transfer_that_stays_corrupt_fails_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = unique_network()
    req_cfg = loopback_config(tmp_path, "requester", network)
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        tamper_chunks(requester, monkeypatch, flip_byte, times=10**6)
        outcome = await requester.submit(
            "digits", load_samples()[0][:2], max_attempts=1, timeout=20
        )
        assert not outcome.ok
        assert outcome.error_code == "unknown_model"
        assert "refused 3 times" in outcome.error and "sha256" in outcome.error
        assert worker.fetcher.refused == 3 and worker.fetcher.fetched == 0
        assert worker.registry.find("digits") is None
        assert [n for n in stored_files(worker) if not n.startswith("plugins")] == []


async def test_two_versions_of_one_name_coexist(tmp_path: Path) -> None:
    network = unique_network()
    req_cfg = loopback_config(tmp_path, "requester", network)
    small = tmp_path / "other.onnx"
    small.write_bytes(scale_model(5.0))
    other_sha = add_model(req_cfg.data_dir / "models", small, name="digits", version="2").sha256
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        assert {s.sha256 for s in requester.registry.specs() if s.name == "digits"} == {
            DIGITS_SHA,
            other_sha,
        }
        v1 = await requester.submit("digits", {"input": load_samples()[0][:3]}, sha256=DIGITS_SHA)
        v2 = await requester.submit("digits", {"x": np.ones(2, dtype=np.float32)}, sha256=other_sha)
        assert v1.ok and v2.ok, (v1.error, v2.error)
        np.testing.assert_allclose(v2.outputs["y"], [5.0, 5.0])
        assert worker.registry.find("digits", DIGITS_SHA) is not None
        assert worker.registry.find("digits", other_sha) is not None
        assert f"digits-{other_sha[:12]}.onnx" in stored_files(worker)
        assert "digits-e691fb4ca41d.onnx" in stored_files(worker)


async def test_a_model_over_the_size_cap_is_not_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = unique_network()
    req_cfg = loopback_config(tmp_path, "requester", network)
    wrk_cfg = loopback_config(
        tmp_path, "worker", network, shipped_models=False, max_model_bytes=10_000
    )
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        served: list[int] = []
        real = requester.session.on_request

        def count(rid: bytes, peer_id: str, msg: dict[str, Any]) -> None:
            if msg["t"] == "model_get":
                served.append(1)
            real(rid, peer_id, msg)

        monkeypatch.setattr(requester.session, "on_request", count)
        outcome = await requester.submit("digits", load_samples()[0][:2], max_attempts=1)
        assert not outcome.ok and outcome.error_code == "unknown_model"
        assert "at most 10000" in outcome.error
        assert served == [] and worker.registry.find("digits") is None


async def test_the_scheduler_prefers_a_worker_that_holds_the_model(tmp_path: Path) -> None:
    network = unique_network()
    configs = [
        loopback_config(tmp_path, "requester", network, caps=()),
        loopback_config(tmp_path, "holder", network),
        loopback_config(tmp_path, "empty", network, shipped_models=False),
    ]
    async with running(*configs) as (requester, holder, empty):
        outcomes = [
            await requester.submit("digits", load_samples()[0][k : k + 1]) for k in range(20)
        ]
        assert all(o.ok for o in outcomes)
        assert {o.worker for o in outcomes} == {holder.peer_id}
        assert empty.fetcher.fetched == 0 and empty.registry.specs() == []


# --- the fetcher and the worker alone (no sockets) --------------------------------------------


class FakeRequester:
    """Answers ``model_get`` from bytes, on a later turn of the loop, as a node would."""

    def __init__(self, blob: bytes, sha: str) -> None:
        self.blob = blob
        self.sha = sha
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.fetcher: ModelFetcher | None = None

    def send(self, peer_id: str, msg: Mapping[str, Any]) -> bool:
        decoded = protocol.decode(protocol.encode(msg))  # a valid protocol message
        self.requests.append((peer_id, decoded))
        data = self.blob[msg["offset"] : msg["offset"] + msg["length"]]
        reply = {
            "t": "model_chunk",
            "id": msg["id"],
            "sha256": self.sha,
            "offset": msg["offset"],
            "data": data,
            "total": len(self.blob),
        }
        assert self.fetcher is not None
        asyncio.get_running_loop().call_soon(self.fetcher.on_reply, peer_id, reply)
        return True


def fake_fetcher(tmp_path: Path, blob: bytes, **options: Any) -> tuple[ModelFetcher, FakeRequester]:
    from netcore.models.store import sha256_bytes

    peers = PeerTable()
    peer, _ = peers.upsert("r" * 20, "k" * 40, "hello")
    peer.greeted = True
    fake = FakeRequester(blob, sha256_bytes(blob))
    peer.models = [{"name": "scale", "sha256": fake.sha, "size": len(blob), "version": "7"}]
    fetcher = ModelFetcher(ModelRegistry([]), tmp_path / "models", peers, fake.send, **options)
    fake.fetcher = fetcher
    return fetcher, fake


async def test_fetcher_asks_only_the_requester_in_bounded_chunks(tmp_path: Path) -> None:
    blob = scale_model(2.0, 200_000)
    fetcher, fake = fake_fetcher(tmp_path, blob, chunk_size=64 * 1024, window=3)
    spec = await fetcher.fetch("r" * 20, "scale", fake.sha, timeout=10)
    assert spec.sha256 == fake.sha and spec.source == "fetched" and spec.version == "7"
    assert {peer for peer, _ in fake.requests} == {"r" * 20}
    assert all(m["length"] <= protocol.MAX_CHUNK for _, m in fake.requests)
    assert [m["offset"] for _, m in fake.requests] == list(range(0, len(blob), 64 * 1024))


async def test_fetcher_refuses_bad_names_and_unknown_requesters(tmp_path: Path) -> None:
    fetcher, fake = fake_fetcher(tmp_path, scale_model())
    with pytest.raises(TaskError) as bad:
        await fetcher.fetch("r" * 20, "../etc", fake.sha, timeout=5)
    assert bad.value.code == "unknown_model"
    with pytest.raises(TaskError) as nobody:
        await fetcher.fetch("s" * 20, "scale", fake.sha, timeout=5)
    assert "the requester does not advertise it" in nobody.value.message
    with pytest.raises(TaskError) as unadvertised:
        await fetcher.fetch("r" * 20, "scale", "ab" * 32, timeout=5)
    assert unadvertised.value.code == "unknown_model"
    assert fake.requests == []


async def test_worker_fetches_only_for_a_pinned_model(tmp_path: Path) -> None:
    from netcore.tasks.worker import Worker

    calls: list[tuple[str, str, str]] = []

    async def fetch(requester: str, model: str, sha: str, budget: float, via: Any) -> Any:
        calls.append((requester, model, sha))
        raise TaskError("unknown_model", "cannot fetch")

    worker = Worker(ModelRegistry([]), capacity=1, queue_limit=1, max_input_bytes=1 << 20)
    worker.fetch = fetch
    inputs = {"x": np.ones(1, dtype=np.float32)}
    try:
        with pytest.raises(TaskError):
            await worker.execute("peer", protocol.new_id(), "scale", None, inputs, 1.0)
        assert calls == []  # no pin: nothing to verify a download against
        with pytest.raises(TaskError):
            await worker.execute("peer", protocol.new_id(), "scale", "ab" * 32, inputs, 1.0)
        assert calls == [("peer", "scale", "ab" * 32)]
    finally:
        worker.close()


# --- which connection the model_get goes on ---------------------------------------------------


def count_model_gets(node: Node, monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """Offsets of the ``model_get`` ``node`` gets on its ROUTER, and of all it answers
    (ROUTER and DEALERs: both go through ``serve_model``)."""
    on_router: list[int] = []
    answered: list[int] = []
    real_request, real_serve = node.session.on_request, node.session.serve_model

    def request(rid: bytes, peer_id: str, msg: dict[str, Any]) -> None:
        if msg["t"] == "model_get":
            on_router.append(msg["offset"])
        real_request(rid, peer_id, msg)

    def serve(msg: dict[str, Any]) -> dict[str, Any]:
        answered.append(msg["offset"])
        return real_serve(msg)

    monkeypatch.setattr(node.session, "on_request", request)
    monkeypatch.setattr(node.session, "serve_model", serve)
    return on_router, answered


async def test_the_worker_fetches_back_on_the_connection_its_task_came_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The requester's hello says ``dealer_serves``: the chunks come back on its own DEALER,
    so the worker needs no connection to it (a requester that joined a moment ago)."""
    network = unique_network()
    req_cfg = loopback_config(tmp_path, "requester", network)
    big_model(tmp_path, req_cfg.data_dir)
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        assert worker.peers.get(requester.peer_id).serves_back  # type: ignore[union-attr]
        on_router, answered = count_model_gets(requester, monkeypatch)
        outcome = await requester.submit("scale", {"x": np.ones(3, dtype=np.float32)})
        assert outcome.ok, outcome.error
        assert on_router == [] and len(answered) == 4  # four chunks, all on the DEALER
        assert worker.fetcher.fetched == 1


async def test_a_requester_without_dealer_serves_is_fetched_from_over_our_dealer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older requester (no ``dealer_serves`` in its hello) never gets a model_get on its
    DEALER: the worker asks on its own DEALER to the requester's ROUTER, as before."""
    monkeypatch.setattr(protocol, "DEALER_SERVES", ())
    network = unique_network()
    req_cfg = loopback_config(tmp_path, "requester", network)
    big_model(tmp_path, req_cfg.data_dir)
    wrk_cfg = loopback_config(tmp_path, "worker", network, shipped_models=False)
    async with running(req_cfg, wrk_cfg) as (requester, worker):
        assert not worker.peers.get(requester.peer_id).serves_back  # type: ignore[union-attr]
        on_router, answered = count_model_gets(requester, monkeypatch)
        outcome = await requester.submit("scale", {"x": np.ones(3, dtype=np.float32)})
        assert outcome.ok, outcome.error
        assert len(on_router) == 4 and sorted(answered) == sorted(on_router)
