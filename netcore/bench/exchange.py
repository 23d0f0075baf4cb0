"""p2pai's side of ``p2pai bench``'s round trip and throughput, and the interleaving of the two
sides.

Both systems run at the same time and are measured in alternating blocks (p2pai, raw, p2pai,
raw, ...), so machine noise (other load, frequency scaling) hits both alike and the ratio of
the two is meaningful on a shared machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from netcore.bench.procs import LOOPBACK, NodeProc, stop_all, unique_network


class Exchange(Protocol):
    """One side of the comparison, up and warmed: see :func:`p2pai_session` and
    :func:`netcore.bench.baselines.raw_session`."""

    async def sequential(self, start_index: int, count: int) -> list[float]:
        """Latencies (ms) of ``count`` tasks, one in flight."""
        ...

    async def flood(self, start_index: int, count: int, inflight: int) -> tuple[float, int]:
        """Elapsed seconds and failed count of ``count`` tasks, ``inflight`` in flight."""
        ...


async def in_lanes(
    one: Callable[[int], Awaitable[None]], start_index: int, count: int, lanes: int
) -> float:
    """Await ``one(i)`` for every index from ``start_index`` on, ``count`` of them, in ``lanes``
    lanes (each takes the next index when its call is over); the elapsed seconds."""
    end = start_index + count
    next_i = start_index

    async def lane() -> None:
        nonlocal next_i
        while next_i < end:
            i = next_i
            next_i += 1
            await one(i)

    t = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(lanes)))
    return time.perf_counter() - t


class P2paiSession:
    """p2pai: an in-process client Node submitting to worker processes (CURVE, validation,
    scheduling, digest check included)."""

    def __init__(self, client: Any, x: np.ndarray, batch: int, pids: list[int]) -> None:
        self.client = client
        self.x = x
        self.batch = batch
        self.pids = pids
        """The worker processes."""

    def rows(self, i: int) -> np.ndarray:
        start = (i * self.batch) % (len(self.x) - self.batch + 1)
        return self.x[start : start + self.batch]

    async def sequential(self, start_index: int, count: int) -> list[float]:
        latencies = []
        for i in range(start_index, start_index + count):
            t = time.perf_counter()
            outcome = await self.client.submit("digits", self.rows(i))
            latencies.append((time.perf_counter() - t) * 1000)
            if not outcome.ok:
                raise RuntimeError(f"task failed: {outcome.error}")
        return latencies

    async def flood(self, start_index: int, count: int, inflight: int) -> tuple[float, int]:
        """``inflight`` lanes, each awaiting one ``submit`` after the other."""
        failed = 0

        async def one(i: int) -> None:
            nonlocal failed
            if not (await self.client.submit("digits", self.rows(i))).ok:
                failed += 1

        return await in_lanes(one, start_index, count, inflight), failed


@contextlib.asynccontextmanager
async def p2pai_session(
    workdir: Path, x: np.ndarray, workers: int = 1, batch: int = 1
) -> AsyncIterator[P2paiSession]:
    """``workers`` ``p2pai node`` processes and an in-process client Node on a network of
    their own, warmed with 200 tasks per worker; every worker is stopped by its pid on exit,
    also on errors."""
    from netcore.config.settings import Config
    from netcore.node import Node

    network = unique_network(f"w{workers}")
    procs: list[NodeProc] = []
    try:
        for i in range(workers):
            procs.append(NodeProc(network, workdir / f"{network}-w{i}", f"w{i}", events=False))
        config = Config(interfaces=(LOOPBACK,), network=network, data_dir=workdir / f"{network}-client",
                        name="bench-client", caps=())  # fmt: skip
        async with Node(config) as client:
            found = await client.wait_for_peers(workers, 60, model="digits")
            if len(found) < workers:
                raise TimeoutError(f"only {len(found)} of {workers} workers came up")
            session = P2paiSession(client, x, batch, [p.pid for p in procs])
            for i in range(200 * workers):  # warm up every worker
                await client.submit("digits", session.rows(i))
            yield session
    finally:
        await asyncio.to_thread(stop_all, procs)


async def interleaved_latencies(
    mine: Exchange, raw: Exchange, tasks: int, block: int = 100
) -> tuple[list[float], list[float]]:
    """``tasks`` sequential tasks on each side, in alternating blocks of ``block``."""
    lat_mine: list[float] = []
    lat_raw: list[float] = []
    done = 0
    while done < tasks:
        n = min(block, tasks - done)
        lat_mine += await mine.sequential(done, n)
        lat_raw += await raw.sequential(done, n)
        done += n
    return lat_mine, lat_raw


async def interleaved_floods(
    mine: Exchange, raw: Exchange, tasks: int, inflight: int, rounds: int = 4
) -> tuple[tuple[float, int], tuple[float, int]]:
    """``tasks`` tasks on each side as ``rounds`` alternating floods (p2pai, then raw);
    per side the total elapsed seconds and failed count."""
    elapsed = [0.0, 0.0]
    failed = [0, 0]
    done = 0
    for r in range(rounds):
        n = tasks // rounds + (1 if r < tasks % rounds else 0)
        for k, side in enumerate((mine, raw)):
            seconds, lost = await side.flood(done, n, inflight)
            elapsed[k] += seconds
            failed[k] += lost
        done += n
    return (elapsed[0], failed[0]), (elapsed[1], failed[1])


def rates(tasks: int, batch: int, elapsed: float) -> dict[str, float]:
    return {
        "throughput_tps": round(tasks / elapsed, 1),
        "samples_per_s": round(tasks * batch / elapsed, 1),
    }
