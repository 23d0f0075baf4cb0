"""/metrics: scraped during a run of real nodes on 127.0.0.1; the counters follow the tasks.

Two in-process nodes (a worker and a client) on one loop, joined by a static peer (mDNS off,
so nothing leaves 127.0.0.1 and no other test's node joins).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from netcore.config.settings import Config
from netcore.node import Node, NodeStartError
from netcore.observe.metrics import Buckets, EventRecorder

sys.path.insert(0, str(Path(__file__).parent / "integration"))
from reach_helpers import http_get, parse_metrics

LOOPBACK = "127.0.0.1"


def config(tmp_path: Path, name: str, network: str, **over: object) -> Config:
    fields: dict[str, object] = {
        "interfaces": (LOOPBACK,),
        "network": network,
        "data_dir": tmp_path / name,
        "name": name,
        "mdns": False,
        "capacity": 2,
    }
    fields.update(over)
    return Config(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    network = f"metrics-{uuid.uuid4().hex[:8]}"
    worker = Node(config(tmp_path, "worker", network, metrics_port=0))
    await worker.start()
    assert worker.identity is not None
    static = f"{worker.endpoint}#{worker.identity.public_text}"
    client = Node(
        config(tmp_path, "client", network, caps=(), metrics_port=0, static_peers=(static,))
    )
    try:
        await client.start()
        assert len(await client.wait_for_peers(1, 15)) == 1
        yield worker, client
    finally:
        await client.stop()
        await worker.stop()


async def scrape(node: Node) -> dict[str, float]:
    status, body = await http_get(LOOPBACK, node.metrics.port, "/metrics")
    assert status == 200
    return parse_metrics(body)


async def test_counters_move_as_tasks_complete(pair: tuple[Node, Node]) -> None:
    worker, client = pair
    sample = np.zeros((1, 64), dtype=np.float32)
    before_c, before_w = await scrape(client), await scrape(worker)
    assert before_c['p2pai_tasks_total{outcome="ok"}'] == 0
    assert before_c["p2pai_task_latency_seconds_count"] == 0
    assert before_w['p2pai_served_tasks_total{outcome="ok"}'] == 0
    assert before_c['p2pai_peers{source="static",state="alive"}'] == 1

    for round_ in (1, 2):
        outcomes = await asyncio.gather(*(client.submit("digits", sample) for _ in range(25)))
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
        c, w = await scrape(client), await scrape(worker)
        done = 25 * round_
        assert c["p2pai_tasks_submitted_total"] == done
        assert c['p2pai_tasks_total{outcome="ok"}'] == done
        assert c["p2pai_task_latency_seconds_count"] == done
        assert c['p2pai_task_latency_seconds_bucket{le="+Inf"}'] == done
        assert c["p2pai_task_latency_seconds_sum"] > 0
        assert w['p2pai_served_tasks_total{outcome="ok"}'] == done
        assert w["p2pai_inference_seconds_count"] == done
        peer = worker.peer_id
        assert c[f'p2pai_peer_tasks_total{{name="worker",outcome="ok",peer="{peer}"}}'] == done
        assert c[f'p2pai_peer_success_ratio{{name="worker",peer="{peer}"}}'] == 1.0
        assert c[f'p2pai_peer_uptime_seconds{{name="worker",peer="{peer}"}}'] >= 0
        assert c["p2pai_sent_bytes_total"] > before_c["p2pai_sent_bytes_total"]
        assert w["p2pai_received_bytes_total"] > before_w["p2pai_received_bytes_total"]
        assert w["p2pai_queue_depth"] == 0 and w["p2pai_inflight_tasks"] == 0
    # The worker sees its requester as a peer that greeted it.
    assert w['p2pai_peers{source="hello",state="alive"}'] == 1


async def test_failures_count_by_code(pair: tuple[Node, Node]) -> None:
    worker, client = pair
    wrong = np.zeros((1, 3), dtype=np.float32)  # the digits model takes 64 features
    outcome = await client.submit("digits", wrong)
    assert not outcome.ok and outcome.error_code == "bad_input"
    c, w = await scrape(client), await scrape(worker)
    assert c['p2pai_tasks_total{outcome="bad_input"}'] == 1
    # The requester holds the model: it judged the input itself and sent nothing (issue 16).
    assert 'p2pai_served_tasks_total{outcome="bad_input"}' not in w
    assert 'p2pai_protocol_errors_total{code="bad_input",direction="received"}' not in c


async def test_endpoint_paths_and_text_format(pair: tuple[Node, Node]) -> None:
    worker, _ = pair
    status, body = await http_get(LOOPBACK, worker.metrics.port, "/metrics")
    assert status == 200
    assert "# TYPE p2pai_task_latency_seconds histogram" in body
    assert f'peer_id="{worker.peer_id}"' in body  # p2pai_node_info
    assert (await http_get(LOOPBACK, worker.metrics.port, "/"))[0] == 200
    assert (await http_get(LOOPBACK, worker.metrics.port, "/nope"))[0] == 404
    assert worker.metrics.host == LOOPBACK, "loopback unless --metrics-host says otherwise"


async def test_a_malformed_scrape_gets_400_and_logs_no_traceback(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    worker, _ = pair
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection(LOOPBACK, worker.metrics.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.read(64), 5)
    writer.close()
    assert b" 400 " in head
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert (await http_get(LOOPBACK, worker.metrics.port, "/metrics"))[0] == 200


async def test_a_busy_metrics_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        node = Node(config(tmp_path, "a", f"m-{uuid.uuid4().hex[:8]}", metrics_port=port))
        with pytest.raises(NodeStartError) as info:
            await node.start()
        with contextlib.suppress(Exception):
            await node.stop()
    text = str(info.value)
    assert f"--metrics-port {port}" in text and "\n" not in text


def test_buckets_are_cumulative() -> None:
    buckets = Buckets([0.1, 1.0])
    for value in (0.05, 0.1, 0.5, 2.0):
        buckets.observe(value)
    assert buckets.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert buckets.total == pytest.approx(2.65)


def test_recorder_bounds_unknown_codes() -> None:
    from netcore.observe.events import TaskDone

    recorder = EventRecorder()
    for code in ("timeout", "made-up-1", "made-up-2"):
        recorder(TaskDone(task_id="t", worker="w", ok=False, latency_ms=1.0, code=code))
    assert recorder.failed_by_code == {"timeout": 1, "other": 2}
