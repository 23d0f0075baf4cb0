"""``p2pai bench``'s targets (each measured value beside its limit) and the machine it ran on."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    import onnxruntime
    import zeroconf
    import zmq

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024, 1)
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "memory_gib": mem,
        "platform": platform.platform(), "python": platform.python_version(),
        "zmq": zmq.zmq_version(), "pyzmq": zmq.__version__,
        "onnxruntime": onnxruntime.__version__, "zeroconf": zeroconf.__version__,
    }  # fmt: skip


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with its measured value and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(name: str, measured: Any, limit: Any, met: bool | None) -> None:
        out.append({"target": name, "measured": measured, "limit": limit, "met": met})

    by_n = {m["n"]: m for m in result.get("mesh", [])}
    if 10 in by_n and "discovery" in by_n[10]:
        v = by_n[10]["discovery"]["new_node_seen_by_each_ms"]["p50"]
        add("new node seen by running nodes, p50 at N=10 (ms)", v, 10, v is not None and v < 10)
    if 50 in by_n:
        v = by_n[50]["mesh"]["from_last_ready_s"]
        add("full mesh of 50 nodes (s, from the last ready)", v, 5, v < 5)
        idle = by_n[50]["idle"]
        add(
            "idle node CPU at 50 peers (% of a core, mean)",
            idle["cpu_pct_mean"],
            1,
            idle["cpu_pct_mean"] is not None and idle["cpu_pct_mean"] < 1,
        )
        add(
            "idle node RSS at 50 peers (MB, max)",
            idle["rss_mb_max"],
            100,
            idle["rss_mb_max"] is not None and idle["rss_mb_max"] < 100,
        )
    rt = result.get("round_trip")
    if rt:
        ratio = rt["ratio_p50"]
        add("round trip p50 / raw pyzmq p50", ratio, 1.5, ratio is not None and ratio <= 1.5)
        p99 = rt["p2pai"]["latency_ms"]["p99"]
        add("round trip p99 (ms)", p99, 2, p99 is not None and p99 < 2)
    for row in result.get("throughput", []):
        if row["workers"] == 1:
            add(
                "throughput, 100 in flight, 1 worker / raw pyzmq",
                row["ratio"],
                0.7,
                row["ratio"] >= 0.7,
            )
    return out
