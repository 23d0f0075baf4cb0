"""Plot a ``p2pai bench --json`` result: latency and throughput against N.

Usage: python benchmarks/bench_plot.py RESULT.json docs/benchmarks.png
Needs matplotlib (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    mesh = result.get("mesh", [])
    ns = [m["n"] for m in mesh if "discovery" in m]
    ax = axes[0]
    for key, label in (
        ("new_node_seen_by_each_ms", "new node seen by each (p50)"),
        ("new_node_seen_by_all_ms", "new node seen by all (p50)"),
        ("late_node_sees_all_ms", "late node sees all (p50)"),
    ):
        ax.plot(
            ns, [m["discovery"][key]["p50"] for m in mesh if "discovery" in m], "o-", label=label
        )
    ax.plot(ns, [m["mesh"]["from_last_ready_s"] * 1000 for m in mesh if "discovery" in m], "s--",
            label="full mesh after last ready")  # fmt: skip
    ax.axhline(10, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("N running nodes")
    ax.set_ylabel("ms")
    ax.set_title("Discovery latency vs N")
    ax.legend(fontsize=8)

    ax = axes[1]
    idle = [m for m in mesh if "idle" in m]
    ax.plot(
        [m["n"] for m in idle],
        [m["idle"]["cpu_pct_mean"] for m in idle],
        "o-",
        label="idle CPU % / node",
    )
    ax.plot([m["n"] for m in idle], [m["idle"]["pings_per_s_per_node"] / 10 for m in idle], "^-",
            label="pings/s per node / 10")  # fmt: skip
    ax2 = ax.twinx()
    ax2.plot(
        [m["n"] for m in idle],
        [m["idle"]["rss_mb_mean"] for m in idle],
        "s--",
        color="C3",
        label="RSS MB",
    )
    ax2.set_ylabel("RSS MB", color="C3")
    ax.set_xlabel("N nodes")
    ax.set_title("Idle cost per node vs N")
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[2]
    rows = result.get("throughput", [])
    ks = [r["workers"] for r in rows]
    ax.plot(ks, [r["p2pai_tps"] for r in rows], "o-", label="p2pai")
    ax.plot(ks, [r["raw_pyzmq_tps"] for r in rows], "s--", label="raw pyzmq, same model")
    ax.set_xlabel("workers (100 tasks in flight)")
    ax.set_ylabel("tasks/s")
    rt = result.get("round_trip")
    title = "Throughput vs workers"
    if rt:
        title += (f"\nround trip p50 {rt['p2pai']['latency_ms']['p50']} ms"
                  f" (raw {rt['raw_pyzmq']['latency_ms']['p50']} ms)")  # fmt: skip
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
