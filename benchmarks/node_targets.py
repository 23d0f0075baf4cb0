"""Measure the node issue's targets on this machine, each beside its baseline in the same run.

- discovery: a node that starts is seen by every running node (peer_up at each of them,
  from the newcomer's `ready`); a node started late sees all running peers;
- task round trip, digits model, two processes, one task in flight: p2pai vs a bare pyzmq
  asyncio DEALER/ROUTER exchange running the same model on the same input, vs a direct
  in-process onnxruntime call;
- throughput with 100 in flight to one worker, same baseline;
- `p2pai demo` with 3 nodes and 200 tasks.

Everything binds to 127.0.0.1 and uses a private network name. Prints one JSON object.
Usage: python benchmarks/node_targets.py [--rounds 15] [--tasks 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from netcore.bench.baselines import raw_session
from netcore.bench.exchange import Exchange, p2pai_session
from netcore.bench.measure import pct
from netcore.bench.procs import NodeProc as BenchNodeProc
from netcore.models.registry import LoadedModel, ModelRegistry, assets_dir, load_samples


class NodeProc(BenchNodeProc):
    """A `p2pai node` child process (netcore.bench.procs); with events, ready when constructed."""

    def __init__(self, network: str, data_dir: Path, name: str, events: bool = True) -> None:
        super().__init__(network, data_dir, name, events)
        if events:
            self.wait_ready(20.0)


def bench_discovery(workdir: Path, rounds: int, running: int = 3) -> dict[str, Any]:
    network = f"bench-{secrets.token_hex(4)}"
    base = [NodeProc(network, workdir / f"base{i}", f"base{i}") for i in range(running)]
    seen_by_running: list[float] = []
    late_sees_all: list[float] = []
    try:
        for node in base:
            for other in base:
                if other is not node:
                    node.wait("peer_up", peer_id=other.ready["peer_id"])
        for r in range(rounds):
            late = NodeProc(network, workdir / f"late{r}", f"late{r}")
            new_id = late.ready["peer_id"]
            t0 = late.ready["t"]
            for node in base:
                seen_by_running.append((node.wait("peer_up", peer_id=new_id)["t"] - t0) * 1000)
            own = [late.wait("peer_up", peer_id=n.ready["peer_id"])["t"] for n in base]
            late_sees_all.append((max(own) - t0) * 1000)
            late.stop()
            for node in base:
                node.wait("peer_down", peer_id=new_id)
    finally:
        for node in base:
            node.stop()
    return {
        "running_nodes": running,
        "rounds": rounds,
        "new_node_seen_by_each_ms": {
            "p50": pct(seen_by_running, 50),
            "p99": pct(seen_by_running, 99),
        },
        "late_node_sees_all_ms": {"p50": pct(late_sees_all, 50), "p99": pct(late_sees_all, 99)},
    }


async def sequential_then_flood(side: Exchange, tasks: int, inflight: int) -> dict[str, Any]:
    """``tasks`` tasks one in flight (p50/p99), then ``tasks`` more with ``inflight`` in flight."""
    latencies = await side.sequential(0, tasks)
    seconds, _ = await side.flood(0, tasks, inflight)
    return {
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "throughput_tps": round(tasks / seconds, 1),
    }


async def raw_baseline(x: np.ndarray, tasks: int, inflight: int) -> dict[str, Any]:
    """The bare pyzmq exchange (``raw_zmq_server.py``), warmed with 200 tasks."""
    async with raw_session(x) as raw:
        return await sequential_then_flood(raw, tasks, inflight)


async def p2pai_round_trip(
    workdir: Path, x: np.ndarray, tasks: int, inflight: int
) -> dict[str, Any]:
    """One worker process and an in-process client, warmed with 200 tasks."""
    async with p2pai_session(workdir, x) as mine:
        return await sequential_then_flood(mine, tasks, inflight)


def direct_onnxruntime(x: np.ndarray, tasks: int) -> dict[str, Any]:
    registry = ModelRegistry([assets_dir() / "models"])
    spec = registry.find("digits")
    assert spec is not None
    model = LoadedModel(spec)
    latencies = []
    for i in range(tasks):
        row = x[i % len(x) : i % len(x) + 1]
        t = time.perf_counter()
        model.run({"input": row})
        latencies.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99)}


def bench_demo(runs: int) -> dict[str, Any]:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-m", "netcore.cli", "demo", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "runs": runs,
        "elapsed_s": [r["elapsed_s"] for r in results],
        "success_rate": [r["success_rate"] for r in results],
        "discovery_ms_p50": [r["discovery_ms"]["p50"] for r in results],
        "latency_ms_p50": [r["latency_ms"]["p50"] for r in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--demo-runs", type=int, default=3)
    args = parser.parse_args()
    x, _ = load_samples()
    with tempfile.TemporaryDirectory(prefix="p2pai-bench-") as tmp:
        workdir = Path(tmp)
        result = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "zmq": zmq.zmq_version(),
            },
            "discovery": bench_discovery(workdir, args.rounds),
            "round_trip": {
                "p2pai": asyncio.run(p2pai_round_trip(workdir, x, args.tasks, 100)),
                "raw_pyzmq_same_model": asyncio.run(raw_baseline(x, args.tasks, 100)),
                "direct_onnxruntime": direct_onnxruntime(x, args.tasks),
            },
            "demo": bench_demo(args.demo_runs),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
