"""What a key press waits on: its tasks go out before the screen is drawn, and a burst is
journaled in one commit before the first of its tasks is sent."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from console_fakes import FakeNode, FrozenClock, digit_samples
from model_helpers import wait_until

from netcore.tasks.journal import Journal
from tui.actions import BURST
from tui.app import P2PConsole

SIZE = (120, 40)
ALPHA = "a1fa0000000000000001"


def console(node: FakeNode, clock: FrozenClock) -> P2PConsole:
    return P2PConsole(node, clock=clock, seed=5, samples=digit_samples(), log_timestamps=False)


async def test_a_key_press_draws_its_task_once_it_is_done(
    fake_node: FakeNode, frozen_clock: FrozenClock
) -> None:
    fake_node.hold = asyncio.Event()
    app = console(fake_node, frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running, what="node start")
        fake_node.add_peer(ALPHA, "alpha", "tcp://127.0.0.1:47101")
        await wait_until(lambda: app.live_peer_count() == 1, what="a peer")
        app.refresh_panes()
        app.action_dispatch()
        # Drawing takes the loop for tens of ms: not while the task is on its way.
        assert app.tasks_pane.row_keys() == [], "the screen was drawn before the task went out"
        await wait_until(lambda: len(fake_node.submitted) == 1, what="the task sent")
        fake_node.hold.set()
        await app.wait_idle()
        await pilot.pause()
        (record,) = app.book.newest(1)
        assert record.state == "done"
        # Drawn as soon as the press's tasks are done, without waiting for the next tick.
        assert app.tasks_pane.row_keys() == [record.task_id]
        assert str(app.tasks_pane.table.get_cell(record.task_id, "state")) == "done"


async def test_a_burst_is_journaled_in_one_commit_before_its_first_task_is_sent(
    tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    node = FakeNode(clock=frozen_clock)
    node.config = replace(node.config, data_dir=tmp_path)
    journaled_at_first_send: list[int] = []
    commits: list[int] = []
    submit = node.submit

    async def counting_submit(model: str, inputs: Any, **options: Any) -> Any:
        if not journaled_at_first_send:
            journal = Journal(tmp_path)
            journaled_at_first_send.append(len(journal.history(limit=10 * BURST)))
            journal.close()
        return await submit(model, inputs, **options)

    node.submit = counting_submit  # type: ignore[method-assign]
    app = console(node, frozen_clock)
    async with app.run_test(size=SIZE):
        await wait_until(lambda: app.tasks.journal is not None, what="the journal open")
        journal = app.tasks.journal
        assert journal is not None
        write = journal.journal._write

        def counted_write() -> Any:
            commits.append(1)
            return write()

        journal.journal._write = counted_write  # type: ignore[method-assign]
        node.add_peer(ALPHA, "alpha", "tcp://127.0.0.1:47101")
        await wait_until(lambda: app.live_peer_count() == 1, what="a peer")
        app.action_burst()
        await app.wait_idle()
    assert journaled_at_first_send == [BURST]
    assert app.book.counters.done == BURST
    # One run, one commit for the burst's tasks; their outcomes share a few more.
    assert 2 <= len(commits) < 2 + BURST // 4, commits
    rows = Journal(tmp_path).history(limit=10 * BURST)
    assert len(rows) == BURST and {r["state"] for r in rows} == {"done"}
