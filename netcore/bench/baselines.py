"""The baselines of ``p2pai bench``: a bare pyzmq asyncio DEALER/ROUTER exchange running the
same model (``benchmarks/raw_zmq_server.py``) and a direct in-process onnxruntime call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from netcore.bench.measure import summary
from netcore.bench.procs import LOOPBACK, free_port, reap_process

RAW_SERVER = Path(__file__).resolve().parents[2] / "benchmarks" / "raw_zmq_server.py"


def _task_payload(x: np.ndarray, i: int, batch: int = 1) -> bytes:
    import msgpack

    from netcore.wire import protocol

    start = (i * batch) % (len(x) - batch + 1)
    return msgpack.packb({
        "v": 1, "t": "task", "id": os.urandom(16), "kind": "infer", "model": "digits",
        "inputs": {"input": protocol.encode_tensor(x[start:start + batch])}, "timeout_ms": 5000,
    }, use_bin_type=True)  # fmt: skip


class RawSession:
    """The baseline: a bare pyzmq asyncio DEALER connected to raw ROUTERs running the model."""

    def __init__(self, dealer: Any, x: np.ndarray, batch: int, pids: list[int]) -> None:
        self.dealer = dealer
        self.x = x
        self.batch = batch
        self.pids = pids
        """The raw server processes."""

    async def sequential(self, start_index: int, count: int) -> list[float]:
        latencies = []
        for i in range(start_index, start_index + count):
            t = time.perf_counter()
            await self.dealer.send(_task_payload(self.x, i, self.batch))
            await self.dealer.recv()
            latencies.append((time.perf_counter() - t) * 1000)
        return latencies

    async def flood(self, start_index: int, count: int, inflight: int) -> tuple[float, int]:
        """One DEALER with ``inflight`` requests outstanding (a reply frees a slot)."""
        end = start_index + count
        t = time.perf_counter()
        sent = start_index
        for _ in range(min(inflight, count)):
            await self.dealer.send(_task_payload(self.x, sent, self.batch))
            sent += 1
        for _ in range(count):
            await self.dealer.recv()
            if sent < end:
                await self.dealer.send(_task_payload(self.x, sent, self.batch))
                sent += 1
        return time.perf_counter() - t, 0  # the raw server has no failure reply


@contextlib.asynccontextmanager
async def raw_session(x: np.ndarray, servers: int = 1, batch: int = 1) -> AsyncIterator[RawSession]:
    """``servers`` raw server processes (``benchmarks/raw_zmq_server.py``) and one DEALER to
    them all, warmed with 200 tasks per server; on exit each server gets a ``stop`` message,
    then is waited for by pid (SIGKILL after 3 s), also on errors."""
    import msgpack
    import zmq
    import zmq.asyncio

    if not RAW_SERVER.exists():
        raise RuntimeError(f"{RAW_SERVER} is missing: run the benchmark from a source checkout")
    procs: list[subprocess.Popen[str]] = []
    ctx = zmq.asyncio.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    connected = False
    try:
        ports = [free_port() for _ in range(servers)]
        for port in ports:
            procs.append(subprocess.Popen([sys.executable, str(RAW_SERVER), str(port)],
                                          stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                          text=True))  # fmt: skip
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if line.strip() != "ready":
                raise RuntimeError(f"raw server (pid {proc.pid}) did not start")
        for port in ports:
            dealer.connect(f"tcp://{LOOPBACK}:{port}")
        connected = True
        await asyncio.sleep(0.1)
        for i in range(200 * servers):  # warm up (and spread over the servers)
            await dealer.send(_task_payload(x, i, batch))
            await dealer.recv()
        yield RawSession(dealer, x, batch, [proc.pid for proc in procs])
    finally:
        if connected:  # one stop per server: the DEALER deals them out round robin
            for _ in procs:
                with contextlib.suppress(zmq.ZMQError, asyncio.TimeoutError):
                    await asyncio.wait_for(dealer.send(msgpack.packb({"t": "stop"})), 1.0)
            await asyncio.sleep(0.05)
        dealer.close(0)
        ctx.term()
        for proc in procs:
            reap_process(proc, 3)
            if proc.stdout is not None:
                proc.stdout.close()


def direct_onnxruntime(x: np.ndarray, tasks: int, batch: int = 1) -> dict[str, Any]:
    from netcore.models.registry import LoadedModel, ModelRegistry, assets_dir

    spec = ModelRegistry([assets_dir() / "models"]).find("digits")
    assert spec is not None
    model = LoadedModel(spec)
    for i in range(50):
        model.run({"input": x[i : i + batch]})
    latencies = []
    t0 = time.perf_counter()
    for i in range(tasks):
        start = (i * batch) % (len(x) - batch + 1)
        rows = x[start : start + batch]
        t = time.perf_counter()
        model.run({"input": rows})
        latencies.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - t0
    return {"latency_ms": summary(latencies), "samples_per_s": round(tasks * batch / elapsed, 1)}
