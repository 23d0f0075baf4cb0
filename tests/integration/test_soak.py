"""A soak: a steady stream of tasks for 60 s while workers join, leave and crash.

Two workers stay up; a third is started, then stopped gracefully or killed with SIGKILL, over
and over. The requester (an in-process client Node) must lose no task and report no failure,
and every outcome must arrive exactly once. ``P2PAI_SOAK_SECONDS`` shortens it for a quick
local run; CI runs the full minute.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netcore.config.settings import Config
from netcore.models.registry import load_samples
from netcore.node import Node

pytestmark = pytest.mark.integration

SOAK_S = float(os.environ.get("P2PAI_SOAK_SECONDS", "60"))
RATE = 150
"""Tasks per second the stream aims at (bounded: at most SOAK_S * RATE tasks in all)."""


@pytest.mark.timeout(SOAK_S + 120)
async def test_soak_with_churn_loses_nothing(
    start_node: Callable[..., Any], network: str, tmp_path: Path
) -> None:
    stable = [start_node("stable-1"), start_node("stable-2")]
    x, _ = load_samples()
    config = Config(
        interfaces=("127.0.0.1",),
        network=network,
        data_dir=tmp_path / "client",
        name="soak-client",
        caps=(),
        task_timeout=1.0,
    )
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    churn_log: list[str] = []
    async with Node(config) as client:
        assert len(await client.wait_for_peers(2, 20, model="digits")) >= 2
        stop = time.monotonic() + SOAK_S

        async def churn() -> None:
            round_ = 0
            while time.monotonic() < stop - 5:
                round_ += 1
                extra = start_node(f"churn-{round_}")
                await asyncio.to_thread(extra.wait_for, "ready", None, 20)
                await asyncio.sleep(4)
                if round_ % 2:
                    extra.kill()
                    churn_log.append(f"killed churn-{round_}")
                else:
                    extra.terminate()
                    churn_log.append(f"stopped churn-{round_}")
                await asyncio.to_thread(extra.wait_exit, 10)
                await asyncio.sleep(1)

        async def one(i: int) -> None:
            outcome = await client.submit("digits", x[i % len(x) : i % len(x) + 1])
            outcomes[outcome.task_id] += 1
            if not outcome.ok:
                failures.append(f"{outcome.error_code}: {outcome.error}")
            elif outcome.label is None:
                failures.append(f"no label in {sorted(outcome.outputs)}")

        churner = asyncio.create_task(churn())
        pending: set[asyncio.Task[None]] = set()
        sent = 0
        started = time.monotonic()
        while time.monotonic() < stop:
            due = int((time.monotonic() - started) * RATE)
            while sent < due:
                task = asyncio.create_task(one(sent))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*pending), 60)
        await churner
        duplicates = client.scheduler.duplicates if client.scheduler else 0
    for node in stable:
        assert node.alive(), node.describe()
    print(
        f"\nsoak: {sent} tasks in {SOAK_S:.0f}s, churn: {', '.join(churn_log)}; "
        f"late duplicate replies dropped: {duplicates}"
    )
    assert len(churn_log) >= 2
    assert failures == []
    assert sum(outcomes.values()) == sent, "every task has an outcome"
    assert set(outcomes.values()) == {1}, "each outcome exactly once"
