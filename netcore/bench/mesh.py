"""``p2pai bench``'s discovery and scale sections: N ``p2pai node --json`` processes start at
once; the time to a full mesh, the idle CPU and RSS of each process and the heartbeat
(``ping``) rate; then a newcomer starts, ``rounds`` times: when each running node sees it
(``peer_up``) and when it sees them all."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np

from netcore.bench.measure import cpu_seconds, log, rss_mb, summary
from netcore.bench.procs import LOOPBACK, NodeProc, stop_all, unique_network


async def _observer(network: str, data_dir: Path) -> Any:
    """An in-process node that joins the mesh to count heartbeats as one member sees them."""
    from netcore.config.settings import Config
    from netcore.node import Node

    node = Node(Config(interfaces=(LOOPBACK,), network=network, data_dir=data_dir,
                       name="bench-observer", caps=()))  # fmt: skip
    await node.start()
    return node


async def bench_mesh(workdir: Path, n: int, rounds: int, idle_s: float) -> dict[str, Any]:
    """N nodes at once: full mesh, idle cost, heartbeats; then ``rounds`` newcomers."""
    network = unique_network(f"n{n}")
    procs: list[NodeProc] = []
    observer = None
    result: dict[str, Any] = {"n": n}
    try:
        spawned = time.time()
        procs = [NodeProc(network, workdir / f"n{n}-{i}", f"n{n}-{i}") for i in range(n)]
        for p in procs:
            await asyncio.to_thread(p.wait_ready, 120.0)
        ids = {p.peer_id for p in procs}
        first_ready = min(p.ready["t"] for p in procs if p.ready)
        last_ready = max(p.ready["t"] for p in procs if p.ready)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(ids - {p.peer_id} <= p.peer_up.keys() for p in procs):
                break
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError(f"no full mesh of {n} nodes in 120 s")
        meshed = max(max(p.peer_up[q] for q in ids - {p.peer_id}) for p in procs)
        result["mesh"] = {
            "from_last_ready_s": round(meshed - last_ready, 3),
            "from_first_ready_s": round(meshed - first_ready, 3),
            "from_spawn_s": round(meshed - spawned, 3),
        }
        log(f"N={n}: full mesh {meshed - last_ready:.3f} s after the last node was ready")
        # Idle: every process only heartbeats now. The observer joins first, then settles.
        observer = await _observer(network, workdir / f"n{n}-observer")
        await observer.wait_for_peers(n, 60, kind=None)
        await asyncio.sleep(min(3.0, idle_s))
        sent0, recv0 = observer.counters["pings_sent"], observer.counters["pings_received"]
        cpu0 = {p.pid: cpu_seconds(p.pid) for p in procs}
        t0 = time.monotonic()
        await asyncio.sleep(idle_s)
        elapsed = time.monotonic() - t0
        cpu1 = {p.pid: cpu_seconds(p.pid) for p in procs}
        pings = (observer.counters["pings_sent"] - sent0 + observer.counters["pings_received"]
                 - recv0) / elapsed  # fmt: skip
        cpu_pct = [
            100 * (after - before) / elapsed
            for k, before in cpu0.items()
            if before is not None and (after := cpu1.get(k)) is not None
        ]
        rss = [r for r in (rss_mb(p.pid) for p in procs) if r is not None]
        result["idle"] = {
            "window_s": round(elapsed, 2),
            "cpu_pct_mean": round(float(np.mean(cpu_pct)), 3) if cpu_pct else None,
            "cpu_pct_max": round(float(np.max(cpu_pct)), 3) if cpu_pct else None,
            "rss_mb_mean": round(float(np.mean(rss)), 1) if rss else None,
            "rss_mb_max": round(float(np.max(rss)), 1) if rss else None,
            "pings_per_s_per_node": round(pings, 1),
            "pings_per_s_mesh": round(pings * (n + 1) / 2, 1),
        }
        await observer.stop()
        observer = None
        log(f"N={n}: idle {result['idle']}")
        # Newcomers.
        seen_each: list[float] = []
        seen_all: list[float] = []
        late_all: list[float] = []
        for r in range(rounds):
            late = NodeProc(network, workdir / f"n{n}-late{r}", f"n{n}-late{r}")
            try:
                await asyncio.to_thread(late.wait_ready, 60.0)
                t0w = late.ready["t"] if late.ready else 0.0
                times = [
                    (await asyncio.to_thread(p.wait, "peer_up", 30.0, peer_id=late.peer_id))["t"]
                    - t0w
                    for p in procs
                ]
                seen_each.extend(t * 1000 for t in times)
                seen_all.append(max(times) * 1000)
                own = [
                    (await asyncio.to_thread(late.wait, "peer_up", 30.0, peer_id=p.peer_id))["t"]
                    for p in procs
                ]
                late_all.append((max(own) - t0w) * 1000)
            finally:
                late.stop()
            for p in procs:
                await asyncio.to_thread(p.wait, "peer_down", 30.0, peer_id=late.peer_id)
        result["discovery"] = {
            "rounds": rounds,
            "new_node_seen_by_each_ms": summary(seen_each),
            "new_node_seen_by_all_ms": summary(seen_all),
            "late_node_sees_all_ms": summary(late_all),
        }
        log(f"N={n}: discovery {result['discovery']}")
    finally:
        if observer is not None:
            await observer.stop()
        await asyncio.to_thread(stop_all, procs)
    return result
