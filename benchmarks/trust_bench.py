"""What verified results cost: throughput with redundancy 3 against one worker per task.

Three ``p2pai node`` worker processes (as deployed: no --json) and one in-process client-only
node, all on 127.0.0.1 in a private network with temporary data dirs. Each round runs the same
number of tasks with the same number in flight, in every mode, in turn:

* ``plain``: ``Node.submit``, one worker per task (the baseline);
* ``plain_3x_inflight``: the same with three times as many tasks in flight, as many attempts
  in flight as redundancy 3 has: the stricter baseline (whichever plain mode is faster counts);
* ``redundancy3_digest``: :class:`netcore.tasks.verify.Verifier`, 3 distinct workers, majority by digest;
* ``redundancy3_label``: the same, majority by class label;
* ``spot_check_10pct``: one worker per task plus 10% known-answer tasks.

A verified round ends when every attempt is over, those finishing after their task's vote
included, so the work counted is all the work done. Cost = the faster plain mode's throughput /
the mode's throughput, per round (the modes of a round run back to back, under the same
background load), median over rounds; ``cost_vs_plain_same_inflight`` compares with ``plain``
only. Target for redundancy 3: under 3.5. Prints one JSON object; every process is stopped
by PID.

Usage: python benchmarks/trust_bench.py [--rounds 5] [--tasks 1500] [--inflight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from netcore.bench.exchange import in_lanes
from netcore.bench.measure import pct
from netcore.bench.procs import LOOPBACK, NodeProc, stop_all, unique_network
from netcore.config.settings import Config
from netcore.models.registry import load_samples
from netcore.node import Node
from netcore.tasks.spot_checks import SpotChecker
from netcore.tasks.verify import Verifier

MODES = (
    "plain",
    "plain_3x_inflight",
    "redundancy3_digest",
    "redundancy3_label",
    "spot_check_10pct",
)


async def run_mode(
    client: Node, mode: str, x: np.ndarray, labels: np.ndarray, tasks: int, inflight: int
) -> dict[str, Any]:
    submitter: Any = client
    verifier: Verifier | None = None
    if mode.startswith("redundancy3"):
        verifier = Verifier(client, redundancy=3, vote=mode.rsplit("_", 1)[1])
    elif mode == "spot_check_10pct":
        spot = SpotChecker.from_reference("digits", x, labels, 0.1, registry=client.registry)
        verifier = Verifier(client, redundancy=1, spot=spot)
    if verifier is not None:
        submitter = verifier
    latencies: list[float] = []
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        row = i % len(x)
        outcome = await submitter.submit("digits", x[row : row + 1])
        latencies.append(outcome.latency_s * 1000)
        failed += 0 if outcome.ok else 1

    lanes = inflight * 3 if mode == "plain_3x_inflight" else inflight
    started = time.perf_counter()
    await in_lanes(one, 0, tasks, lanes)
    if verifier is not None:  # attempts still running after their vote: the work is not done
        while verifier._background:
            await asyncio.gather(*list(verifier._background), return_exceptions=True)
    elapsed = time.perf_counter() - started
    out: dict[str, Any] = {
        "tps": round(tasks / elapsed, 1),
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "failed": failed,
    }
    if verifier is not None:
        stats = verifier.stats.to_json()
        out["verify"] = {k: v for k, v in stats.items() if v}
    return out


async def bench(
    workdir: Path, rounds: int, tasks: int, inflight: int, workers: int
) -> dict[str, Any]:
    network = unique_network("trust")
    procs = [NodeProc(network, workdir / f"w{i}", f"w{i}", events=False) for i in range(workers)]
    client = Node(Config(interfaces=(LOOPBACK,), network=network, data_dir=workdir / "client",
                         name="bench-client", caps=(), task_timeout=10.0))  # fmt: skip
    try:
        await client.start()
        found = await client.wait_for_peers(workers, 30, model="digits")
        if len(found) < workers:
            raise SystemExit(f"only {len(found)} of {workers} workers came up")
        x, labels = load_samples()
        assert labels is not None
        for mode in MODES:  # warm-up: sessions, connections, caches
            await run_mode(client, mode, x, labels, min(300, tasks), inflight)
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for _ in range(rounds):
            for mode in MODES:
                runs[mode].append(await run_mode(client, mode, x, labels, tasks, inflight))
        result: dict[str, Any] = {}
        # Per round: the modes ran back to back, under the same background load; the cost is
        # the median over rounds of (the faster plain mode's tps / this mode's tps).
        same = [r["tps"] for r in runs["plain"]]
        best = [
            max(a["tps"], b["tps"])
            for a, b in zip(runs["plain"], runs["plain_3x_inflight"], strict=True)
        ]
        for mode, items in runs.items():
            tps = [r["tps"] for r in items]
            result[mode] = {
                "tps_median": statistics.median(tps),
                "tps_runs": tps,
                "p50_ms_median": statistics.median(r["p50_ms"] for r in items),
                "p99_ms_median": statistics.median(r["p99_ms"] for r in items),
                "failed": sum(r["failed"] for r in items),
                "cost_vs_plain": round(
                    statistics.median(p / t for p, t in zip(best, tps, strict=True)), 2
                ),
                "cost_vs_plain_same_inflight": round(
                    statistics.median(p / t for p, t in zip(same, tps, strict=True)), 2
                ),
                "last_run": items[-1],
            }
        return result
    finally:
        await client.stop()
        stop_all(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=1500)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2pai-trust-bench-") as tmp:
        results = asyncio.run(
            bench(Path(tmp), args.rounds, args.tasks, args.inflight, args.workers)
        )
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "zmq": zmq.zmq_version()},
        "settings": vars(args),
        "target": "redundancy 3 costs under 3.5x the single-task throughput",
        "results": results,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
