"""Markdown tables of a ``p2pai bench --json`` result, for docs/benchmarks.md.

Usage: python benchmarks/bench_report.py RESULT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _lat(entry: dict[str, Any]) -> str:
    lat = entry.get("latency_ms") or {}
    return f"{lat.get('p50')} | {lat.get('p99')}"


def report(result: dict[str, Any]) -> str:
    out: list[str] = []
    m = result.get("machine", {})
    out.append(
        f"Run {result.get('started')}: {m.get('cpus')} vCPUs ({m.get('cpu_model')}), "
        f"{m.get('memory_gib')} GiB, {m.get('platform')}, Python {m.get('python')}, "
        f"ZeroMQ {m.get('zmq')}, pyzmq {m.get('pyzmq')}, onnxruntime {m.get('onnxruntime')}, "
        f"python-zeroconf {m.get('zeroconf')}. Shared machine; all on 127.0.0.1."
    )
    out += ["", "### Targets", "", "| target | measured | limit | status |", "|---|---|---|---|"]
    for t in result.get("targets", []):
        status = "met" if t["met"] else "**missed**"
        out.append(f"| {t['target']} | {t['measured']} | {t['limit']} | {status} |")
    mesh = result.get("mesh", [])
    if mesh:
        out += [
            "",
            "### Discovery and scale (N `p2pai node` processes started at once, then newcomers)",
            "",
            "| N | full mesh after last `ready` (s) | new node seen by each p50 / p99 (ms) "
            "| seen by all p50 / p99 | late node sees all p50 / p99 | idle CPU % (mean / max) "
            "| RSS MB (mean / max) | pings/s per node |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in mesh:
            d, idle = row.get("discovery", {}), row.get("idle", {})

            def pair(key: str, d: dict[str, Any] = d) -> str:
                s = d.get(key, {})
                return f"{s.get('p50')} / {s.get('p99')}"

            out.append(
                f"| {row['n']} | {row.get('mesh', {}).get('from_last_ready_s')} "
                f"| {pair('new_node_seen_by_each_ms')} | {pair('new_node_seen_by_all_ms')} "
                f"| {pair('late_node_sees_all_ms')} "
                f"| {idle.get('cpu_pct_mean')} / {idle.get('cpu_pct_max')} "
                f"| {idle.get('rss_mb_mean')} / {idle.get('rss_mb_max')} "
                f"| {idle.get('pings_per_s_per_node')} |"
            )
    rt = result.get("round_trip")
    if rt:
        out += [
            "",
            f"### Round trip (digits, two processes, one in flight, {rt['tasks']} tasks each, "
            "in alternating blocks of 100)",
            "",
            "| path | p50 ms | p99 ms |",
            "|---|---|---|",
            f"| p2pai (`Node.submit`: CURVE, validation, scheduling, digest) | {_lat(rt['p2pai'])} |",
            f"| raw pyzmq asyncio DEALER/ROUTER, same model | {_lat(rt['raw_pyzmq'])} |",
            f"| direct in-process onnxruntime call | {_lat(rt['direct_onnxruntime'])} |",
            "",
            f"p50 ratio p2pai / raw: **{rt.get('ratio_p50')}**.",
        ]
    tp = result.get("throughput")
    if tp:
        out += [
            "",
            "### Throughput (100 in flight from one requester, 4 alternating rounds each)",
            "",
            "| workers | p2pai tasks/s | raw pyzmq tasks/s | ratio | failed |",
            "|---|---|---|---|---|",
        ]
        for row in tp:
            out.append(
                f"| {row['workers']} | {row['p2pai_tps']} | {row['raw_pyzmq_tps']} "
                f"| {round(row['ratio'], 3)} | {row['failed']} |"
            )
    b = result.get("batched")
    if b:
        out += [
            "",
            f"Batched (batches of {b['batch']}, {b['inflight']} in flight, one worker): p2pai "
            f"**{b['p2pai_samples_per_s']}** samples/s; raw pyzmq {b['raw_pyzmq_samples_per_s']}; "
            f"direct onnxruntime {b['direct_samples_per_s']}.",
        ]
    c = result.get("console")
    if c and "skipped" not in c:
        k = c.get("key_latency_ms", {})
        out += [
            "",
            "### The console under load",
            "",
            f"`P2PConsole` in `app.run_test()` on a real node with one worker process: "
            f"{c['tasks']} tasks as bursts of 100 (`b`): **{c['events_per_s']}** node events/s "
            f"handled ({c['tasks_per_s']} tasks/s, {c['failed']} failed); key latency (`c`, "
            f"press to idle) while a {c['stream_rate']:g}/s stream runs: p50 **{k.get('p50')} ms**, "
            f"p99 {k.get('p99')} ms.",
        ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/bench_report.py RESULT.json")
    print(report(json.loads(Path(sys.argv[1]).read_text())), end="")
