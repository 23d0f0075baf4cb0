"""Issue 16: a claim is an upper bound, never a weight. Measures the share of tasks a worker
claiming 1024 slots gets beside two honest workers claiming 2, when it is really *slower*
(it answers true outputs 20 ms late: tests/liar.py's ``slow`` mode), and when it is a
``bad_input`` refuser (tests/refuser.py); real in-process nodes on 127.0.0.1.

    PYTHONPATH=. python benchmarks/claimed_capacity.py [--tasks 300] [--concurrency 16]

Prints one JSON line per case: tasks done by each worker, failures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from liar import LyingNode
from model_helpers import loopback_config, running, unique_network
from refuser import RefusingNode

from netcore.models.registry import load_samples
from netcore.node import Node


async def case(kind: str, tasks: int, concurrency: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        base, net = Path(tmp), unique_network("claims")
        honest = [Node(loopback_config(base, f"honest{i}", net, capacity=2)) for i in range(2)]
        big_config = loopback_config(base, "claims-1024", net, capacity=1024)
        big: Node = (
            LyingNode(big_config, "slow", delay=0.02)
            if kind == "slow"
            else RefusingNode(big_config)
        )
        client = Node(loopback_config(base, "client", net, caps=()))
        async with running(*honest, big, client):
            names = {n.peer_id: n.config.name for n in (*honest, big)}
            samples = load_samples()[0]
            slots = asyncio.Semaphore(concurrency)
            done: Counter[str] = Counter()

            async def one(i: int) -> None:
                async with slots:
                    outcome = await client.submit("digits", samples[i % len(samples)][None, :])
                    done[names.get(outcome.worker or "", "FAILED") if outcome.ok else "FAILED"] += 1

            await asyncio.gather(*(one(i) for i in range(tasks)))
            asked = getattr(big, "asked", None)
        return {"case": kind, "tasks": tasks, "done_by": dict(done), "big_claimer_asked": asked}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    for kind in ("slow", "refuser"):
        print(json.dumps(await case(kind, args.tasks, args.concurrency)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
