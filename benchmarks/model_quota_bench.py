"""Measure the fetched-model quota and the one-load-per-model rule (issue 16).

A requester holds ``--models`` real ONNX models of about ``--size`` bytes each (tests/onnx_bytes.py,
padded with a used initializer); a worker that holds none of them, with ``--quota`` bytes of
quota, gets ``--tasks`` tasks over a random model sequence (seeded). After every task the bytes
its fetched models take are read from the disk. Every onnxruntime ``InferenceSession`` created
on the worker's files is counted at the constructor.

Prints one JSON object: the largest disk use seen (must stay <= the quota), fetches, evictions,
whether each eviction took the least recently used fetched model, a user model of the worker's
own left alone, and sessions created per fetch (1.0 = one load per model; 2.0 on the base).
Both nodes run in this process on 127.0.0.1 with a private network name.
Usage: python benchmarks/model_quota_bench.py [--models 8] [--size 1000000] [--quota 3500000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from onnx_bytes import scale_model  # noqa: E402

from netcore.config.settings import Config  # noqa: E402
from netcore.models.store import add_model, stored_models  # noqa: E402
from netcore.node import Node  # noqa: E402


def count_sessions(under: Path) -> list[str]:
    seen: list[str] = []
    real = onnxruntime.InferenceSession

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, source: Any, *args: Any, **kwargs: Any) -> None:
            if isinstance(source, (str, Path)) and str(source).startswith(str(under)):
                seen.append(str(source))
            super().__init__(source, *args, **kwargs)

    onnxruntime.InferenceSession = Counting  # type: ignore[misc]
    return seen


async def main(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="p2pai-quota-"))
    network = f"quota-bench-{uuid.uuid4().hex[:8]}"

    def config(name: str, **extra: Any) -> Config:
        return Config(
            interfaces=("127.0.0.1",), network=network, data_dir=base / name, name=name,
            shipped_models=False, **extra,
        )  # fmt: skip

    req_cfg = config("requester")
    wrk_cfg = config("worker", model_quota=args.quota)
    names = [f"m{k}" for k in range(args.models)]
    for k, name in enumerate(names):
        path = base / f"{name}.onnx"
        path.write_bytes(scale_model(float(k + 2), args.size, seed=k))
        add_model(req_cfg.data_dir / "models", path, name=name)
    mine = base / "mine.onnx"
    mine.write_bytes(scale_model(9.0, args.size, seed=99))
    add_model(wrk_cfg.data_dir / "models", mine, name="mine")
    sessions = count_sessions(wrk_cfg.data_dir)
    requester, worker = Node(req_cfg), Node(wrk_cfg)
    await requester.start()
    await worker.start()
    rng = random.Random(args.seed)
    last_use: dict[str, int] = {}
    max_used, failed, lru_ok, lru_checked = 0, 0, 0, 0
    try:
        while len(requester.usable_peers(kind=None)) < 1:
            await asyncio.sleep(0.05)
        for step in range(args.tasks):
            name = rng.choice(names)
            before = {s.name for _, s in worker.fetcher.quota.fetched()}
            outcome = await requester.submit(name, {"x": np.ones(3, dtype=np.float32)})
            failed += not outcome.ok
            after = {s.name for _, s in worker.fetcher.quota.fetched()}
            gone = before - after
            if gone:  # the evicted ones must be the least recently used of those held
                lru_checked += 1
                held = sorted(before - {name}, key=lambda n: last_use.get(n, -1))
                lru_ok += sorted(gone) == sorted(held[: len(gone)])
            last_use[name] = step
            max_used = max(max_used, worker.fetcher.quota.used())
        user_kept = any(s.name == "mine" for _, s in stored_models(wrk_cfg.data_dir / "models"))
        fetched = worker.fetcher.fetched
        return {
            "models": args.models,
            "model_bytes": args.size,
            "quota_bytes": args.quota,
            "tasks": args.tasks,
            "failed": failed,
            "max_fetched_bytes_on_disk": max_used,
            "within_quota": max_used <= args.quota,
            "fetches": fetched,
            "evictions": worker.fetcher.quota.evicted,
            "evictions_least_recently_used": f"{lru_ok}/{lru_checked}",
            "user_model_kept": user_kept,
            "sessions_on_worker_files": len(sessions),
            "sessions_per_fetched_model": round((len(sessions) - 1) / max(1, fetched), 2),
            "note": "sessions include 1 for the worker's own user model (warm-up)",
        }
    finally:
        await requester.stop()
        await worker.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--quota", type=int, default=3_500_000)
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--seed", type=int, default=16)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
