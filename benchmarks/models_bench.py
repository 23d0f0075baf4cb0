"""Measure the models issue's targets on this machine.

- batched digits inference across 2 worker processes: samples/s with large batches
  (target >= 500,000), beside what one onnxruntime thread does with no network at all;
- fetching a 20 MB model between two local nodes: a worker process that lacks the model gets
  a task for it, fetches it from the requester (model_get, 1 MiB chunks), verifies the
  sha256, stores it (temp file, fsync, rename), loads it and answers (target < 1 s); the
  same task once the model is held is measured too, so the difference is the fetch.

Everything binds to 127.0.0.1 and uses a private network name; every process started is
stopped by its PID. Prints one JSON object.
Usage: python benchmarks/models_bench.py [--batch 4096] [--tasks 400] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # onnx_bytes: ONNX files built without the onnx package

from onnx_bytes import scale_model  # noqa: E402

from netcore.config.settings import Config  # noqa: E402
from netcore.models.registry import LoadedModel, assets_dir, load_manifest, load_samples  # noqa: E402
from netcore.models.store import add_model  # noqa: E402
from netcore.node import Node  # noqa: E402
from netcore.tasks.batch import run_batches  # noqa: E402


class Worker:
    """A ``p2pai node`` child process (no --json: nothing to read while timing)."""

    def __init__(self, network: str, data_dir: Path, name: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netcore.cli", "node", "--interface", "127.0.0.1",
             "--network", network, "--data-dir", str(data_dir), "--name", name,
             "--log-level", "warning", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def client_config(network: str, data_dir: Path, **extra: Any) -> Config:
    return Config(
        interfaces=("127.0.0.1",), network=network, data_dir=data_dir, name="bench", **extra
    )


def direct_baseline(batch: int, seconds: float = 1.0) -> float:
    """Samples/s of one onnxruntime thread running the digits model on batches, in process."""
    model = LoadedModel(load_manifest(assets_dir() / "models" / "digits.json"))
    x = np.ascontiguousarray(np.resize(load_samples()[0], (batch, 64)))
    for _ in range(3):
        model.run({"input": x})
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.run({"input": x})
        runs += 1
    return runs * batch / (time.perf_counter() - started)


async def bench_batches(
    workdir: Path, workers: int, batch: int, tasks: int, concurrency: int
) -> dict[str, Any]:
    network = f"bench-{uuid.uuid4().hex[:8]}"
    procs = [Worker(network, workdir / f"w{k}", f"w{k}") for k in range(workers)]
    try:
        async with Node(client_config(network, workdir / "client", caps=())) as client:
            found = await client.wait_for_peers(workers, 20, model="digits")
            assert len(found) == workers, "workers not found"
            x, y = load_samples()
            # Warm-up: sessions, connections, thread pools.
            await run_batches(client, "digits", x, y, batch * workers * 4, batch, concurrency)
            summary = await run_batches(client, "digits", x, y, tasks * batch, batch, concurrency)
            return {
                "workers": workers,
                "batch": batch,
                "tasks": summary["tasks"],
                "concurrency": concurrency,
                "samples": summary["samples_ok"],
                "failed_tasks": summary["failed"],
                "samples_per_s": round(summary["throughput_sps"]),
                "task_latency_ms": summary["latency_ms"],
                "accuracy": summary["accuracy"],
                "per_worker_tasks": sorted(summary["workers"].values()),
            }
    finally:
        for proc in procs:
            proc.stop()


async def bench_fetch(workdir: Path, size: int, rounds: int) -> dict[str, Any]:
    network = f"bench-{uuid.uuid4().hex[:8]}"
    worker = Worker(network, workdir / "fetch-worker", "fetcher")
    cfg = client_config(network, workdir / "fetch-requester", caps=())
    specs = []
    for k in range(rounds):  # a different model each round: each is a real download
        src = workdir / f"big{k}.onnx"
        src.write_bytes(scale_model(2.0 + k, size, seed=k))
        specs.append(add_model(cfg.data_dir / "models", src, name=f"big{k}"))
    first_ms, held_ms = [], []
    try:
        async with Node(cfg) as requester:
            await requester.wait_for_peers(1, 20)
            x = {"x": np.arange(4, dtype=np.float32)}
            for spec in specs:
                started = time.perf_counter()
                outcome = await requester.submit(spec.name, x, timeout=30)
                first_ms.append((time.perf_counter() - started) * 1000)
                assert outcome.ok, outcome.error
                started = time.perf_counter()
                again = await requester.submit(spec.name, x)
                held_ms.append((time.perf_counter() - started) * 1000)
                assert again.ok, again.error
    finally:
        worker.stop()
    stored = sorted(p.name for p in (workdir / "fetch-worker" / "models").glob("big*.onnx"))
    return {
        "model_bytes": specs[0].size,
        "rounds": rounds,
        "first_task_ms": [round(v, 1) for v in first_ms],
        "task_when_held_ms": [round(v, 2) for v in held_ms],
        "fetch_ms_median": round(float(np.median(np.subtract(first_ms, held_ms))), 1),
        "stored_on_worker": stored,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--fetch-bytes", type=int, default=20_000_000)
    parser.add_argument("--fetch-rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2pai-models-bench-") as tmp:
        workdir = Path(tmp)
        result = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "direct_onnxruntime_one_thread_samples_per_s": round(direct_baseline(args.batch)),
            "batched": asyncio.run(
                bench_batches(workdir, args.workers, args.batch, args.tasks, args.concurrency)
            ),
            "fetch": asyncio.run(bench_fetch(workdir, args.fetch_bytes, args.fetch_rounds)),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
