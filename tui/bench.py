"""The console's benchmark, ``p2pai bench``'s console section: the Textual console on a real
node with one worker process, events handled per second under bursts and key latency while a
stream of tasks runs.

``python -m tui.bench --workdir DIR --bursts N --key-presses N`` prints one JSON object (the
dict :func:`bench_console` returns) on stdout; ``netcore.bench.console`` runs it so that netcore
never imports the console.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netcore.bench.measure import summary
from netcore.bench.procs import LOOPBACK, NodeProc, unique_network
from netcore.config.settings import Config
from netcore.node import Node


async def bench_console(workdir: Path, bursts: int, key_presses: int) -> dict[str, Any]:
    """The Textual console on a real node with one worker process: bursts of 100 tasks (b),
    then key latency (c, clear finished) while a stream of tasks (r) runs."""
    try:
        from tui.actions import BURST
        from tui.app import P2PConsole
    except ImportError as exc:  # the console is part of the distribution; say so if it is not
        return {"skipped": f"tui not importable: {exc}"}
    network = unique_network("tui")
    worker = NodeProc(network, workdir / "tui-worker", "tui-worker", events=False)
    try:
        node = Node(Config(interfaces=(LOOPBACK,), network=network, data_dir=workdir / "tui-node",
                           name="bench-console", caps=()))  # fmt: skip
        handled = 0
        make_subscription = node.events

        class Counting:
            def __init__(self) -> None:
                self.sub = make_subscription()

            def __aiter__(self) -> Counting:
                return self

            async def __anext__(self) -> Any:
                nonlocal handled
                item = await self.sub.__anext__()
                handled += 1
                return item

        node.events = Counting  # type: ignore[method-assign,assignment]
        app = P2PConsole(node, seed=1, log_timestamps=False, stream_rate=500.0)
        out: dict[str, Any] = {}
        try:
            async with app.run_test(size=(120, 40)) as pilot:
                await _until(lambda: len(node.usable_peers(model="digits")) >= 1, 60)
                await pilot.press("d")
                await _until(lambda: app.book.counters.done + app.book.counters.failed >= 1, 30)
                base_done = app.book.counters.done + app.book.counters.failed
                await pilot.pause(0.3)
                h0 = handled
                t0 = time.perf_counter()
                for _ in range(bursts):
                    await pilot.press("b")
                target = base_done + bursts * BURST
                await _until(
                    lambda: app.book.counters.done + app.book.counters.failed >= target, 120
                )
                await pilot.pause()
                elapsed = time.perf_counter() - t0
                out["tasks"] = bursts * BURST
                out["events_handled"] = handled - h0
                out["events_per_s"] = round((handled - h0) / elapsed, 1)
                out["tasks_per_s"] = round(bursts * BURST / elapsed, 1)
                out["failed"] = app.book.counters.failed
                await pilot.press("r")  # a stream of tasks while keys are pressed
                await pilot.pause(0.5)
                latencies = []
                for _ in range(key_presses):
                    t = time.perf_counter()
                    await pilot.press("c")
                    latencies.append((time.perf_counter() - t) * 1000)
                    await pilot.pause(0.02)
                await pilot.press("r")
                out["key_latency_ms"] = summary(latencies)
                out["stream_rate"] = 500.0
                await pilot.press("q")
        finally:
            await node.stop()
    finally:
        await asyncio.to_thread(worker.stop)
    return out


async def _until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not met in time")
        await asyncio.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="p2pai bench's console section; prints JSON.")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--key-presses", type=int, default=20)
    args = parser.parse_args(argv)
    result = asyncio.run(bench_console(args.workdir, args.bursts, args.key_presses))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
