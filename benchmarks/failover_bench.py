"""Failover: how long the tasks in flight on a worker take to complete elsewhere when it dies.

Three `p2pai node` processes on 127.0.0.1; an in-process client keeps 32 tasks in flight
(`--task-timeout` 1 s); one worker is killed with SIGKILL mid-run. For every task that was
in flight at the kill, the time from the kill to its outcome is measured; the target is 2x the
attempt timeout. Also counts tasks lost (no outcome) and outcomes delivered twice.
Usage: python benchmarks/failover_bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from netcore.bench.procs import NodeProc, stop_all
from netcore.config.settings import Config
from netcore.models.registry import load_samples
from netcore.node import Node

ATTEMPT_TIMEOUT = 1.0


async def one_round(workdir: Path, tasks: int) -> dict[str, Any]:
    network = f"fail-{secrets.token_hex(4)}"
    procs = [NodeProc(network, workdir / f"w{i}", f"w{i}", events=False) for i in range(3)]
    x, _ = load_samples()
    outcomes: Counter[str] = Counter()
    done_at: dict[str, float] = {}
    started_at: dict[str, float] = {}
    try:
        config = Config(
            interfaces=("127.0.0.1",),
            network=network,
            data_dir=workdir / "client",
            name="client",
            caps=(),
            task_timeout=ATTEMPT_TIMEOUT,
        )
        async with Node(config) as client:
            await client.wait_for_peers(3, 20, model="digits")
            next_i = 0
            killed_at: float | None = None

            async def lane() -> None:
                nonlocal next_i
                while next_i < tasks:
                    i = next_i
                    next_i += 1
                    task_id = f"t{i:06d}"
                    started_at[task_id] = time.monotonic()
                    outcome = await client.submit(
                        "digits", x[i % len(x) : i % len(x) + 1], task_id=task_id
                    )
                    outcomes[task_id] += 1
                    done_at[task_id] = time.monotonic()
                    assert outcome.ok, outcome.error

            async def killer() -> None:
                nonlocal killed_at
                while next_i < tasks // 2:
                    await asyncio.sleep(0.005)
                # The worker with the most of our attempts in flight right now.
                busiest = max(client.peers, key=lambda p: p.inflight)
                names = {p.peer_id: p.name for p in client.peers}
                index = int(names[busiest.peer_id][1:])
                killed_at = time.monotonic()
                os.kill(procs[index].pid, signal.SIGKILL)

            await asyncio.gather(killer(), *(lane() for _ in range(32)))
        assert killed_at is not None
        in_flight = [t for t in started_at if started_at[t] <= killed_at < done_at[t]]
        recovery = [done_at[t] - killed_at for t in in_flight]
        return {
            "tasks": tasks,
            "lost": tasks - len(outcomes),
            "delivered_twice": sum(1 for n in outcomes.values() if n > 1),
            "in_flight_at_kill": len(in_flight),
            "recovered_max_s": round(max(recovery, default=0.0), 4),
            "target_s": 2 * ATTEMPT_TIMEOUT,
        }
    finally:
        stop_all(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=4000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2pai-failover-") as tmp:
        results = [
            asyncio.run(one_round(Path(tmp) / f"r{r}", args.tasks)) for r in range(args.rounds)
        ]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
