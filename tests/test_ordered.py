"""Work run concurrently, results handed on in order; a bounded buffer; a stop that reports."""

from __future__ import annotations

import asyncio

from netcore.tasks.ordered import run_in_order


async def test_results_come_in_index_order_whatever_order_they_finish_in() -> None:
    gates = {i: asyncio.Event() for i in range(20)}
    emitted: list[int] = []

    async def work(i: int) -> int:
        await gates[i].wait()
        return i * 10

    run = asyncio.ensure_future(
        run_in_order(20, 5, work, lambda i, r: emitted.append(r), window=None)
    )
    for i in reversed(range(20)):  # the last started finish first
        gates[i].set()
        await asyncio.sleep(0)
    progress = await run
    assert emitted == [i * 10 for i in range(20)]
    assert (progress.started, progress.emitted, progress.interrupted) == (20, 20, False)


async def test_a_slow_item_holds_back_at_most_the_window() -> None:
    slow = asyncio.Event()
    started: list[int] = []
    emitted: list[int] = []

    async def work(i: int) -> int:
        started.append(i)
        if i == 0:
            await slow.wait()
        return i

    run = asyncio.ensure_future(
        run_in_order(1000, 4, work, lambda i, r: emitted.append(r), window=8)
    )
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(started) == 8 and emitted == []  # item 0 is stuck: 7 more ran, then a pause
    slow.set()
    await run
    assert emitted == list(range(1000))


async def test_a_stop_cancels_the_running_items_and_hands_on_what_is_in() -> None:
    stop = asyncio.Event()
    emitted: list[int] = []
    stuck = asyncio.Event()

    async def work(i: int) -> int:
        if i == 2:
            await stuck.wait()  # never set: cancelled by the stop
        if i == 6:
            stop.set()
        return i

    progress = await run_in_order(100, 3, work, lambda i, r: emitted.append(r), stop=stop)
    assert progress.interrupted
    assert 2 not in emitted and emitted == sorted(emitted)
    assert set(range(7)) - {2} <= set(emitted)  # done before the stop: all handed on
    assert progress.emitted == len(emitted) < 100
