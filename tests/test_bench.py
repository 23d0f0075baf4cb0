"""`p2pai bench`: its code paths run and its JSON keeps its documented field names.

No timing is asserted: the figures depend on the machine.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from netcore import bench
from netcore.cli import cli
from netcore.models import load_samples


def fake_result() -> dict[str, Any]:
    lat = {"p50": 0.5, "p99": 1.0, "n": 10}
    mesh = [
        {
            "n": n,
            "mesh": {"from_last_ready_s": 0.1, "from_first_ready_s": 0.2, "from_spawn_s": 3.0},
            "idle": {
                "window_s": 1.0,
                "cpu_pct_mean": 0.5,
                "cpu_pct_max": 0.7,
                "rss_mb_mean": 80.0,
                "rss_mb_max": 90.0,
                "pings_per_s_per_node": 5.0,
                "pings_per_s_mesh": 30.0,
            },
            "discovery": {
                "rounds": 1,
                "new_node_seen_by_each_ms": lat,
                "new_node_seen_by_all_ms": lat,
                "late_node_sees_all_ms": lat,
            },
        }
        for n in (10, 50)
    ]
    return {
        "schema": bench.SCHEMA, "quick": True, "machine": {"cpus": 2, "platform": "test"}, "mesh": mesh,
        "round_trip": {"tasks": 10, "p2pai": {"latency_ms": lat}, "raw_pyzmq": {"latency_ms": lat},
                       "direct_onnxruntime": {"latency_ms": lat}, "ratio_p50": 1.2},
        "throughput": [{"workers": 1, "inflight": 100, "tasks": 10, "p2pai_tps": 8.0,
                        "raw_pyzmq_tps": 10.0, "ratio": 0.8, "failed": 0}],
        "batched": {"batch": 64, "inflight": 8, "tasks": 2, "p2pai_samples_per_s": 1.0,
                    "raw_pyzmq_samples_per_s": 1.0, "direct_samples_per_s": 1.0},
        "console": {"events_per_s": 1.0, "key_latency_ms": lat},
    }  # fmt: skip


def test_targets_name_every_issue_target(capsys: pytest.CaptureFixture[str]) -> None:
    result = fake_result()
    result["targets"] = bench.targets(result)
    names = [t["target"] for t in result["targets"]]
    assert len(names) == 7
    assert all(t["met"] for t in result["targets"])
    assert all(set(t) == {"target", "measured", "limit", "met"} for t in result["targets"])
    bench.print_human(result)
    assert "MISSED" not in capsys.readouterr().out
    json.dumps(result)  # JSON-able


def test_measuring_helpers_run() -> None:
    assert bench.summary([]) == {"p50": None, "p99": None, "n": 0}
    assert bench.summary([1.0, 2.0, 3.0])["p50"] == 2.0
    assert bench.cpu_seconds(os.getpid()) is not None
    assert (bench.rss_mb(os.getpid()) or 0) > 0
    x, _ = load_samples()
    direct = bench.direct_onnxruntime(np.ascontiguousarray(x, dtype=np.float32), 20, batch=4)
    assert set(direct) == {"latency_ms", "samples_per_s"} and direct["latency_ms"]["n"] == 20
    assert set(bench.machine()) >= {"cpus", "platform", "python", "zmq", "onnxruntime"}
    assert bench.RAW_SERVER.exists()


def test_bench_command_is_registered() -> None:
    out = CliRunner().invoke(cli, ["bench", "--help"])
    assert out.exit_code == 0
    assert "--quick" in out.output and "--json" in out.output
