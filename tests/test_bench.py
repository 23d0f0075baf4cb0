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

from netcore.bench import runner as bench
from netcore.cli.root import cli
from netcore.models.registry import load_samples


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


class FakeSession:
    """Stands in for a p2pai or raw session: records every call in a shared log."""

    def __init__(self, side: str, calls: list[tuple[str, ...]], closed: list[str]) -> None:
        self.side = side
        self.calls = calls
        self.closed = closed

    async def sequential(self, start_index: int, count: int) -> list[float]:
        self.calls.append((self.side, "sequential", str(start_index), str(count)))
        return [1.0 if self.side == "p2pai" else 0.5] * count

    async def flood(self, start_index: int, count: int, inflight: int) -> tuple[float, int]:
        self.calls.append((self.side, "flood", str(start_index), str(count)))
        return count / (100.0 if self.side == "p2pai" else 200.0), 0


async def test_run_interleaves_and_keeps_its_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    calls: list[tuple[str, ...]] = []
    closed: list[str] = []

    def fake(side: str) -> Any:
        @contextlib.asynccontextmanager
        async def session(*args: Any, **kwargs: Any) -> Any:
            calls.append((side, "open"))
            try:
                yield FakeSession(side, calls, closed)
            finally:
                closed.append(side)

        return session

    monkeypatch.setattr(bench, "p2pai_session", fake("p2pai"))
    monkeypatch.setattr(bench, "raw_session", fake("raw"))
    result = await bench.run(True, {"round_trip", "throughput", "batched"})
    json.dumps(result)
    rt = result["round_trip"]
    assert rt["interleaved"] is True and rt["ratio_p50"] == 2.0
    assert rt["p2pai"]["latency_ms"]["n"] == rt["raw_pyzmq"]["latency_ms"]["n"] == rt["tasks"]
    assert {"throughput_tps", "samples_per_s", "failed"} <= set(rt["p2pai"])
    assert set(rt["direct_onnxruntime"]["latency_ms"]) == {"p50", "p99", "n"}
    assert [row["workers"] for row in result["throughput"]] == [1, 2, 4]
    for row in result["throughput"]:
        assert set(row) == {"workers", "inflight", "tasks", "p2pai_tps", "raw_pyzmq_tps",
                            "ratio", "failed", "interleaved"}  # fmt: skip
        assert row["interleaved"] is True and row["ratio"] == 0.5 and row["failed"] == 0
    assert set(result["batched"]) == {"batch", "inflight", "tasks", "p2pai_samples_per_s",
                                      "raw_pyzmq_samples_per_s", "direct_samples_per_s",
                                      "interleaved"}  # fmt: skip
    # Both are up before anything is measured, then sides alternate call by call.
    assert calls[:2] == [("p2pai", "open"), ("raw", "open")]
    measured = [c for c in calls if c[1] != "open"]
    assert [c[0] for c in measured] == ["p2pai", "raw"] * (len(measured) // 2)
    sequential = [c for c in measured if c[1] == "sequential"]
    assert {c[3] for c in sequential} == {"100"} and len(sequential) == 2 * rt["tasks"] // 100
    floods = [c for c in measured if c[1] == "flood"]
    assert len(floods) == 8 * 5  # 4 rounds per side: round trip, 3 throughput, batched
    assert closed.count("p2pai") == closed.count("raw") == 5


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_real_sessions_interleave_and_stop_their_processes(tmp_path: Any) -> None:
    x, _ = load_samples()
    x = np.ascontiguousarray(x, dtype=np.float32)
    async with (
        bench.p2pai_session(tmp_path, x) as mine,
        bench.raw_session(x) as raw,
    ):
        pids = mine.pids + raw.pids
        assert len(pids) == 2 and not any(gone(p) for p in pids)
        lat_mine, lat_raw = await bench.interleaved_latencies(mine, raw, 150)
        assert len(lat_mine) == len(lat_raw) == 150
        (t_mine, failed), (t_raw, _) = await bench.interleaved_floods(mine, raw, 42, 5)
        assert t_mine > 0 and t_raw > 0 and failed == 0
    assert all(gone(p) for p in pids)
    with pytest.raises(RuntimeError, match="boom"):  # stopped on errors too
        async with bench.raw_session(x, servers=2) as raw:
            pids = raw.pids
            raise RuntimeError("boom")
    assert len(pids) == 2 and all(gone(p) for p in pids)
