"""``p2pai bench`` without ``--json``: one line per section, then the targets."""

from __future__ import annotations

from typing import Any


def print_human(result: dict[str, Any]) -> None:
    print(f"p2pai bench ({'quick' if result['quick'] else 'full'}) on {result['machine']['cpus']} CPUs, "
          f"{result['machine']['platform']}")  # fmt: skip
    for m in result.get("mesh", []):
        d, idle = m.get("discovery", {}), m.get("idle", {})
        print(f"N={m['n']:>3}  mesh {m['mesh']['from_last_ready_s']:.3f} s  "
              f"seen by each p50 {d['new_node_seen_by_each_ms']['p50']} ms p99 {d['new_node_seen_by_each_ms']['p99']} ms  "
              f"late sees all p50 {d['late_node_sees_all_ms']['p50']} ms  "
              f"idle cpu {idle['cpu_pct_mean']}%  rss {idle['rss_mb_mean']} MB  pings/s/node {idle['pings_per_s_per_node']}")  # fmt: skip
    rt = result.get("round_trip")
    if rt:
        print(f"round trip p50/p99 ms: p2pai {rt['p2pai']['latency_ms']['p50']}/{rt['p2pai']['latency_ms']['p99']}  "
              f"raw pyzmq {rt['raw_pyzmq']['latency_ms']['p50']}/{rt['raw_pyzmq']['latency_ms']['p99']}  "
              f"direct onnxruntime {rt['direct_onnxruntime']['latency_ms']['p50']}  ratio {rt['ratio_p50']}")  # fmt: skip
    for row in result.get("throughput", []):
        print(
            f"throughput {row['workers']} worker(s): p2pai {row['p2pai_tps']}/s  raw {row['raw_pyzmq_tps']}/s  ratio {row['ratio']}"
        )
    b = result.get("batched")
    if b:
        print(f"batched x{b['batch']}: p2pai {b['p2pai_samples_per_s']} samples/s  raw {b['raw_pyzmq_samples_per_s']}  "
              f"direct {b['direct_samples_per_s']}")  # fmt: skip
    c = result.get("console")
    if c and "events_per_s" in c:
        print(f"console: {c['events_per_s']} events/s handled, key latency p50 {c['key_latency_ms']['p50']} ms "
              f"p99 {c['key_latency_ms']['p99']} ms")  # fmt: skip
    for t in result.get("targets", []):
        print(
            f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['measured']} (limit {t['limit']})"
        )
