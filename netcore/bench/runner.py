"""``p2pai bench``: every performance figure beside its baseline, measured in the same run.

Sections (each a function returning plain JSON-able dicts; field names are stable, see
``docs/benchmarks.md``):

* ``discovery`` and ``scale``, for each N: N ``p2pai node --json`` processes start at once;
  the time to a full mesh, the idle CPU and RSS of each process and the heartbeat (``ping``)
  rate; then a newcomer starts, ``rounds`` times: when each running node sees it
  (``peer_up``) and when it sees them all (:mod:`netcore.bench.mesh`);
* ``round_trip``: digits, two processes, one task in flight: p2pai beside a bare pyzmq
  asyncio DEALER/ROUTER exchange running the same model (``benchmarks/raw_zmq_server.py``)
  and beside a direct in-process onnxruntime call (run after, in this process);
* ``throughput``: 100 in flight from one requester to 1, 2 and 4 workers, beside the raw
  exchange to as many raw servers; ``batched``: samples/s in batches of 64, 8 in flight;
* ``console``: the Textual console on a real node: events handled per second under bursts
  and key latency while a stream runs (``python -m tui.bench`` in a child process, see
  :mod:`netcore.bench.console`).

p2pai and the raw exchange are compared *interleaved*: both are started and warmed up
(200 tasks per worker or server) and stay up together, and the measurement alternates
between them, so both see the same machine conditions on a shared, noisy machine. The round
trip alternates blocks of 100 sequential tasks (p2pai, raw, p2pai, ...) until each has run
``tasks``; p50/p99 are over all of a side's tasks (its ``throughput_tps`` comes from
interleaved floods of 100 in flight, run after, on the same two sessions). Throughput and batched alternate 4 floods
(p2pai, then raw, each a quarter of the tasks); a side's rate is its total tasks over its
total elapsed time. Each such entry carries ``"interleaved": true``.

Every node binds to 127.0.0.1 and uses a network name unique to the run; every process
started here is stopped by its pid, also on errors.

This module is the command and the run; the names tests and scripts use from it
(``__all__``) live in the section modules beside it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from netcore.bench.baselines import RAW_SERVER, direct_onnxruntime, raw_session
from netcore.bench.console import bench_console
from netcore.bench.exchange import interleaved_floods, interleaved_latencies, p2pai_session, rates
from netcore.bench.measure import cpu_seconds, log, rss_mb, summary
from netcore.bench.mesh import bench_mesh
from netcore.bench.report import print_human
from netcore.bench.targets import machine, targets

__all__ = [
    "RAW_SERVER", "SCHEMA", "SECTIONS", "bench_console", "bench_mesh", "cpu_seconds",
    "direct_onnxruntime", "interleaved_floods", "interleaved_latencies", "machine",
    "p2pai_session", "print_human", "raw_session", "register", "rss_mb", "run", "summary",
    "targets",
]  # fmt: skip

SCHEMA = "p2pai-bench/1"
SECTIONS = ("mesh", "round_trip", "throughput", "batched", "console")


async def bench_round_trip(workdir: Path, x: np.ndarray, tasks: int) -> dict[str, Any]:
    """One task in flight, interleaved blocks, then interleaved floods of 100 in flight."""
    async with p2pai_session(workdir, x) as mine_s, raw_session(x) as raw_s:
        lat_mine, lat_raw = await interleaved_latencies(mine_s, raw_s, tasks)
        (t_mine, failed), (t_raw, _) = await interleaved_floods(mine_s, raw_s, tasks, 100)
    direct = direct_onnxruntime(x, tasks)
    mine: dict[str, Any] = {
        "latency_ms": summary(lat_mine),
        **rates(tasks, 1, t_mine),
        "failed": failed,
    }
    raw: dict[str, Any] = {"latency_ms": summary(lat_raw), **rates(tasks, 1, t_raw)}
    p50, raw50 = mine["latency_ms"]["p50"], raw["latency_ms"]["p50"]
    return {
        "tasks": tasks, "interleaved": True, "p2pai": mine, "raw_pyzmq": raw,
        "direct_onnxruntime": direct,
        "ratio_p50": round(p50 / raw50, 3) if p50 and raw50 else None,
    }  # fmt: skip


async def bench_throughput(workdir: Path, x: np.ndarray, tasks: int) -> list[dict[str, Any]]:
    """100 in flight to 1, 2 and 4 workers beside as many raw servers, interleaved floods."""
    rows = []
    for k in (1, 2, 4):
        log(f"throughput, {k} worker(s) (interleaved)")
        total = tasks * 2
        async with (
            p2pai_session(workdir, x, workers=k) as mine_s,
            raw_session(x, servers=k) as raw_s,
        ):
            (t_mine, failed), (t_raw, _) = await interleaved_floods(mine_s, raw_s, total, 100)
        mine_tps, raw_tps = total / t_mine, total / t_raw
        rows.append({
            "workers": k, "inflight": 100, "tasks": total, "interleaved": True,
            "p2pai_tps": round(mine_tps, 1), "raw_pyzmq_tps": round(raw_tps, 1),
            "ratio": round(mine_tps / raw_tps, 3), "failed": failed,
        })  # fmt: skip
        log(f"throughput {rows[-1]}")
    return rows


async def bench_batched(workdir: Path, x: np.ndarray, tasks: int) -> dict[str, Any]:
    """Samples/s in batches of 64, 8 in flight, interleaved floods; beside direct onnxruntime."""
    batch, count = 64, tasks // 5
    async with (
        p2pai_session(workdir, x, batch=batch) as mine_s,
        raw_session(x, batch=batch) as raw_s,
    ):
        (t_mine, failed), (t_raw, _) = await interleaved_floods(mine_s, raw_s, count, 8)
    if failed:
        log(f"batched: {failed} p2pai task(s) failed")
    direct = direct_onnxruntime(x, count, batch=batch)
    return {
        "batch": batch, "inflight": 8, "tasks": count, "interleaved": True,
        "p2pai_samples_per_s": rates(count, batch, t_mine)["samples_per_s"],
        "raw_pyzmq_samples_per_s": rates(count, batch, t_raw)["samples_per_s"],
        "direct_samples_per_s": direct["samples_per_s"],
    }  # fmt: skip


async def run(quick: bool, sections: set[str] | None = None) -> dict[str, Any]:
    from netcore.models.registry import load_samples

    x, _ = load_samples()
    x = np.ascontiguousarray(x, dtype=np.float32)
    want = sections or set(SECTIONS)
    ns = [2, 10] if quick else [2, 10, 25, 50]
    rounds = 5 if quick else 10
    idle_s = 3.0 if quick else 10.0
    tasks = 1000 if quick else 3000
    result: dict[str, Any] = {"schema": SCHEMA, "quick": quick, "machine": machine(),
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="p2pai-bench-") as tmp:
        workdir = Path(tmp)
        if "mesh" in want:
            result["mesh"] = [await bench_mesh(workdir, n, rounds, idle_s) for n in ns]
        if "round_trip" in want:
            log("round trip (interleaved)")
            result["round_trip"] = await bench_round_trip(workdir, x, tasks)
            log(f"round trip {result['round_trip']}")
        if "throughput" in want:
            result["throughput"] = await bench_throughput(workdir, x, tasks)
        if "batched" in want:
            log("batched (interleaved)")
            result["batched"] = await bench_batched(workdir, x, tasks)
            log(f"batched {result['batched']}")
        if "console" in want:
            log("console")
            result["console"] = await bench_console(
                workdir, 3 if quick else 10, 20 if quick else 50
            )
            log(f"console {result['console']}")
    result["targets"] = targets(result)
    return result


def register(cli: Any) -> None:
    """Add ``p2pai bench`` to the command group."""
    import click

    @cli.command()
    @click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object (stable field names)."
    )
    @click.option(
        "--quick", is_flag=True, help="N = 2, 10 only, fewer rounds and tasks (a few minutes)."
    )
    @click.option("--only", multiple=True, type=click.Choice(list(SECTIONS)),
                  help="Run only these sections (repeatable).")  # fmt: skip
    def bench(as_json: bool, quick: bool, only: tuple[str, ...]) -> None:
        """Measure discovery, round trip, throughput, scale and the console, each beside its
        baseline in the same run. Everything binds to 127.0.0.1 on a private network name."""
        result = asyncio.run(run(quick, set(only) or None))
        if as_json:
            print(json.dumps(result, indent=2))
        else:
            print_human(result)


if __name__ == "__main__":  # python -m netcore.bench.runner [--quick]
    data = asyncio.run(run("--quick" in sys.argv))
    print(json.dumps(data, indent=2))
