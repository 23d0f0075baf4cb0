"""What the Prometheus endpoint costs in task throughput (target: under 2%).

A worker and a client node in this process, on 127.0.0.1 (static peer, mDNS off), the client
submitting digits tasks with N in flight. Rounds alternate, ABBA, between

- **off**: neither node serves metrics (no recorder is installed);
- **on**: both serve ``/metrics`` (their per-task recorders run) and a separate scraper
  process fetches both endpoints every ``--scrape-interval`` seconds during the round,

so that order and the drift of a shared machine hit both alike; the medians, and the median of
each round's on/off pair, are compared. One process doing both sides is the harshest case:
every cost of the metrics lands on the one loop that does all the work. Because a loaded
2-core machine still moves throughput by more than the effect, the costs are also measured
directly: the recorder's cost per task event and one scrape's render time (with 1 and with
200 peers); ``bound_pct`` adds them up at the measured throughput and scrape interval.
Prints one JSON object.

Usage: python benchmarks/metrics_bench.py [--rounds 8] [--duration 3] [--scrape-interval 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import numpy as np

from netcore.config.settings import Config
from netcore.node import Node
from netcore.observe.events import TaskDone, TaskServed
from netcore.observe.metrics import EventRecorder
from netcore.observe.metrics_server import MetricsServer

LOOPBACK = "127.0.0.1"

SCRAPER = r"""
import socket, sys, time
ports = [int(p) for p in sys.argv[1].split(",")]
interval, duration = float(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + duration
count = 0
while time.monotonic() < end:
    for port in ports:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while s.recv(65536):
                pass
        count += 1
    time.sleep(max(0.0, interval))
print(count)
"""


async def run_for(client: Node, duration: float, concurrency: int) -> float:
    """Tasks per second that ``client`` completes with ``concurrency`` in flight."""
    sample = np.zeros((1, 64), dtype=np.float32)
    done = 0
    failed = 0
    end = time.perf_counter() + duration

    async def lane() -> None:
        nonlocal done, failed
        while time.perf_counter() < end:
            outcome = await client.submit("digits", sample)
            if outcome.ok:
                done += 1
            else:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if failed:
        raise RuntimeError(f"{failed} tasks failed")
    return done / elapsed


def recorder_cost_ns() -> dict[str, float]:
    recorder = EventRecorder()
    done = TaskDone(task_id="t", worker="w", ok=True, latency_ms=0.3)
    served = TaskServed(task_id="t", requester="r", ok=True, took_us=9)
    n = 200_000
    per_done = timeit.timeit(lambda: recorder(done), number=n) / n * 1e9
    per_served = timeit.timeit(lambda: recorder(served), number=n) / n * 1e9
    call = timeit.timeit(lambda: None, number=n) / n * 1e9
    return {
        "task_done_ns": round(per_done - call, 1),
        "task_served_ns": round(per_served - call, 1),
    }


async def render_cost_ms(client: Node, extra_peers: int) -> float:
    server: MetricsServer = client.metrics
    for k in range(extra_peers):
        peer, _ = client.peers.upsert(f"{k:020x}", "k" * 40, "mdns", name=f"fake-{k}")
        peer.tasks_ok, peer.tasks_failed, peer.rtt = 90, 10, 0.001
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        server.render()
        times.append((time.perf_counter() - t0) * 1000)
    for k in range(extra_peers):
        client.peers.remove(f"{k:020x}")
    return round(statistics.median(times), 3)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="p2pai-metrics-bench-"))
    network = f"bench-{secrets.token_hex(4)}"
    base: dict[str, Any] = {"interfaces": (LOOPBACK,), "network": network, "mdns": False}
    worker = Node(Config(data_dir=tmp / "worker", name="worker", capacity=2, **base))
    results: dict[str, list[float]] = {"off": [], "on": []}
    scrapes = 0
    servers: list[MetricsServer] = []
    await worker.start()
    assert worker.identity is not None
    static = f"{worker.endpoint}#{worker.identity.public_text}"
    client = Node(
        Config(data_dir=tmp / "client", name="client", caps=(), static_peers=(static,), **base)
    )

    async def metrics_on() -> list[int]:
        for node in (worker, client):
            node.metrics = await MetricsServer(node).start(LOOPBACK, 0)
            servers.append(node.metrics)
        return [worker.metrics.port, client.metrics.port]

    async def metrics_off() -> None:
        for node in (worker, client):
            if node.metrics is not None:
                await node.metrics.close()
                node.metrics = None

    try:
        await client.start()
        if not await client.wait_for_peers(1, 20):
            raise RuntimeError("the client found no worker")
        await run_for(client, 1.0, args.concurrency)  # warm-up
        # ABBA: off on on off off on ... so that order and drift hit both modes alike.
        order = [("off", "on") if r % 2 == 0 else ("on", "off") for r in range(args.rounds)]
        for pair in order:
            for mode in pair:
                if mode == "off":
                    results["off"].append(await run_for(client, args.duration, args.concurrency))
                    continue
                ports = await metrics_on()
                scraper = subprocess.Popen(
                    [sys.executable, "-c", SCRAPER, ",".join(map(str, ports)),
                     str(args.scrape_interval), str(args.duration)],
                    stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                results["on"].append(await run_for(client, args.duration, args.concurrency))
                out, _ = await asyncio.to_thread(scraper.communicate, None, args.duration + 30)
                scrapes += int(out.strip() or 0)
                await metrics_off()
        await metrics_on()
        render_1 = await render_cost_ms(client, 0)
        render_200 = await render_cost_ms(client, 200)
        await metrics_off()
    finally:
        await client.stop()
        await worker.stop()
    med_off = statistics.median(results["off"])
    med_on = statistics.median(results["on"])
    recorder = recorder_cost_ns()
    # Both recorders run on this one loop: a TaskDone and a TaskServed per task.
    per_task_ns = recorder["task_done_ns"] + recorder["task_served_ns"]
    return {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "scrape_interval_s": args.scrape_interval,
        },
        "throughput_tps": {
            "off": [round(v, 1) for v in results["off"]],
            "on": [round(v, 1) for v in results["on"]],
            "median_off": round(med_off, 1),
            "median_on": round(med_on, 1),
        },
        "overhead_pct": round((med_off - med_on) / med_off * 100, 2),
        # Each "on" round against the "off" round just before it: drift of a shared machine
        # cancels better in pairs than across medians.
        "paired_overhead_pct": round(
            statistics.median(
                (o - n) / o * 100 for o, n in zip(results["off"], results["on"], strict=True)
            ),
            2,
        ),
        "bound_pct": round(
            per_task_ns * med_off / 1e9 * 100 + render_1 / 1000 / args.scrape_interval * 100, 3
        ),
        "scrapes": scrapes,
        "recorder_ns_per_event": recorder,
        "recorder_share_of_task_pct": round(per_task_ns * med_off / 1e9 * 100, 3),
        "render_ms": {"peers_1": render_1, "peers_200": render_200},
        "scrape_share_at_interval_pct": round(render_1 / 1000 / args.scrape_interval * 100, 3),
        "target_pct": 2.0,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
